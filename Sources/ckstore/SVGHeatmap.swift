import CKStore

/// A self-contained SVG heatmap of a metric over LAWA (k, ν): one row per k, one column per ν,
/// each cell coloured by its value on a light-to-dark scale and labelled with it; a cell with
/// no value is drawn hatched grey and labelled "missing". No external fonts, scripts or styles;
/// every text is escaped.
struct SVGHeatmap {
    /// The window lengths (rows, top to bottom).
    var ks: [Int]
    /// The strides (columns, left to right).
    var strides: [Int]
    /// The metric value of each (k, ν) that has one.
    var values: [SweepCombination: Double]
    var title: String
    var metric: String

    /// The value as a cell label: four significant digits, plain notation for ordinary
    /// magnitudes, Swift's own notation otherwise.
    static func label(_ v: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        let a = abs(v)
        if a == 0 { return "0" }
        guard a >= 1e-3, a < 1e9 else { return "\(v)" }
        var digits = 0
        var m = a
        while m < 1000 && digits < 6 {
            m *= 10
            digits += 1
        }
        var text = Console.format(v, decimals: digits)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text
    }

    /// The fill colour for fraction `t` of the value range (0: lowest, pale; 1: highest, dark
    /// blue), and whether a label on it should be white.
    static func color(_ t: Double) -> (fill: String, lightText: Bool) {
        let low = (247.0, 251.0, 255.0)
        let high = (8.0, 48.0, 107.0)
        let f = Swift.min(Swift.max(t.isFinite ? t : 0.5, 0), 1)
        func channel(_ a: Double, _ b: Double) -> Int { Int((a + (b - a) * f).rounded()) }
        func hex(_ n: Int) -> String {
            let digits = Array("0123456789abcdef")
            return String([digits[n / 16], digits[n % 16]])
        }
        return ("#" + hex(channel(low.0, high.0)) + hex(channel(low.1, high.1)) + hex(channel(low.2, high.2)), f > 0.55)
    }

    /// The SVG document.
    func render() -> String {
        let cellW = 96.0, cellH = 40.0
        let left = 80.0, top = 70.0, right = 30.0, bottom = 50.0
        let width = left + cellW * Double(max(strides.count, 1)) + right
        let height = top + cellH * Double(max(ks.count, 1)) + bottom
        let finite = values.values.filter(\.isFinite)
        let low = finite.min() ?? 0, high = finite.max() ?? 0
        func f(_ v: Double) -> String { Console.format(v, decimals: 1) }
        let e = SVGPlot.escape
        var out: [String] = []
        out.append(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">"
        )
        out.append(
            "<defs><pattern id=\"missing\" width=\"8\" height=\"8\" patternUnits=\"userSpaceOnUse\" patternTransform=\"rotate(45)\">"
                + "<rect width=\"8\" height=\"8\" fill=\"#eeeeee\"/><line x1=\"0\" y1=\"0\" x2=\"0\" y2=\"8\" stroke=\"#bbbbbb\" stroke-width=\"3\"/></pattern></defs>"
        )
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        out.append("<text x=\"\(f(width / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(e(title))</text>")
        out.append(
            "<text x=\"\(f(left + cellW * Double(strides.count) / 2))\" y=\"\(f(top - 30))\" text-anchor=\"middle\">stride ν</text>")
        out.append("<text x=\"18\" y=\"\(f(top + cellH * Double(ks.count) / 2))\" text-anchor=\"middle\">k</text>")
        for (j, stride) in strides.enumerated() {
            out.append("<text x=\"\(f(left + cellW * (Double(j) + 0.5)))\" y=\"\(f(top - 10))\" text-anchor=\"middle\">\(stride)</text>")
        }
        for (i, k) in ks.enumerated() {
            let y = top + cellH * Double(i)
            out.append("<text x=\"\(f(left - 10))\" y=\"\(f(y + cellH / 2 + 4))\" text-anchor=\"end\">\(k)</text>")
            for (j, stride) in strides.enumerated() {
                let x = left + cellW * Double(j)
                let combination = SweepCombination(k: k, stride: stride)
                let cx = f(x + cellW / 2), cy = f(y + cellH / 2 + 4)
                let name = "lawa-k\(k)-s\(stride)"
                if let v = values[combination] {
                    let (fill, light) = SVGHeatmap.color(SVGPlot.fraction(v, low, high))
                    out.append(
                        "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(cellW))\" height=\"\(f(cellH))\" fill=\"\(fill)\" stroke=\"white\"><title>\(name): \(e(SVGHeatmap.label(v)))</title></rect>"
                    )
                    out.append(
                        "<text x=\"\(cx)\" y=\"\(cy)\" text-anchor=\"middle\" fill=\"\(light ? "white" : "black")\" class=\"value\">\(e(SVGHeatmap.label(v)))</text>"
                    )
                } else {
                    out.append(
                        "<rect x=\"\(f(x))\" y=\"\(f(y))\" width=\"\(f(cellW))\" height=\"\(f(cellH))\" fill=\"url(#missing)\" stroke=\"white\"><title>\(name): missing</title></rect>"
                    )
                    out.append("<text x=\"\(cx)\" y=\"\(cy)\" text-anchor=\"middle\" fill=\"#777777\" class=\"missing\">missing</text>")
                }
            }
        }
        let legendY = top + cellH * Double(ks.count) + 30
        out.append(
            "<text x=\"\(f(left))\" y=\"\(f(legendY))\">\(e(metric)): \(finite.isEmpty ? "no values" : "\(e(SVGHeatmap.label(low))) (light) to \(e(SVGHeatmap.label(high))) (dark)")</text>"
        )
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
