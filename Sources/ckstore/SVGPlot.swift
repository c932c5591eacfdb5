import CKStore

/// A self-contained SVG line chart: axes with "nice" ticks, one polyline with markers per
/// series, and a legend. No external fonts, scripts or styles.
struct SVGPlot {
    /// One line of the chart.
    struct Series {
        var name: String
        var points: [(x: Double, y: Double)]
    }

    var title: String
    var xLabel: String
    var yLabel: String
    var series: [Series]
    var width = 760.0
    var height = 440.0

    private static let palette = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

    /// "Nice" tick values covering [low, high]: steps of 1, 2 or 5 × 10^n. Works for any
    /// finite bounds (±1e308 included) and gives at most a few dozen ticks; never loops
    /// forever.
    static func ticks(_ low: Double, _ high: Double, count: Int = 6) -> [Double] {
        guard low.isFinite, high.isFinite else { return [] }
        guard high > low else { return [low] }
        // (high − low) may overflow; halves do not.
        let raw = (high / 2 - low / 2) / Double(count) * 2
        guard raw.isFinite, raw > 0 else { return [low, high] }
        var magnitude = 1.0
        while magnitude * 10 <= raw && (magnitude * 10).isFinite { magnitude *= 10 }
        while magnitude > raw && magnitude / 10 > 0 { magnitude /= 10 }
        let step = [1.0, 2.0, 5.0, 10.0].map { $0 * magnitude }.first { $0 >= raw && $0.isFinite } ?? raw
        guard step.isFinite, step > 0 else { return [low, high] }
        var t = (low / step).rounded(.up) * step
        if !t.isFinite { t = low }
        var result: [Double] = []
        while t <= high + step * 1e-9 && result.count < 4 * count + 4 {
            result.append(abs(t) < step * 1e-9 ? 0 : t)
            let next = t + step
            if !(next > t) || !next.isFinite { break }  // no progress (precision) or overflow
            t = next
        }
        return result
    }

    /// A short label for a tick value.
    static func label(_ v: Double) -> String {
        guard v.isFinite else { return "\(v)" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int(v)) }
        if abs(v) >= 1e15 || abs(v) < 1e-3 { return "\(v)" }
        var s = String(format4(v))
        while s.hasSuffix("0") { s.removeLast() }
        if s.hasSuffix(".") { s.removeLast() }
        return s
    }

    /// `v` with four decimals; values beyond ±1e15 (never a pixel coordinate) and non-finite
    /// values in Swift's own notation rather than converted through `Int`.
    private static func format4(_ v: Double) -> String {
        guard v.isFinite, abs(v) < 1e15 else { return "\(v)" }
        let scaled = (abs(v) * 10000).rounded()
        let whole = Int(scaled / 10000)
        var frac = String(Int(scaled.truncatingRemainder(dividingBy: 10000)))
        while frac.count < 4 { frac = "0" + frac }
        return (v < 0 ? "-" : "") + "\(whole).\(frac)"
    }

    /// `s` escaped for SVG text and attribute values (control characters first).
    static func escape(_ s: String) -> String {
        TerminalText.escape(s).replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    /// The axis range for `values` (finite ones only): their minimum and maximum, widened when
    /// they are equal and padded by `pad` of the span, clamped to finite numbers.
    static func axisRange(_ values: [Double], pad: Double, empty: (Double, Double)) -> (low: Double, high: Double) {
        let finite = values.filter(\.isFinite)
        guard var low = finite.min(), var high = finite.max() else { return empty }
        let limit = Double.greatestFiniteMagnitude
        func clamp(_ v: Double) -> Double { Swift.min(Swift.max(v, -limit), limit) }
        if high == low {
            let d = Swift.max(abs(low) * 0.1, 0.5)
            low = clamp(low - d)
            high = clamp(high + d)
        }
        let p = (high / 2 - low / 2) * 2 * pad
        return (clamp(low - p), clamp(high + p))
    }

    /// Where `v` lies in [low, high], from 0 to 1, computed without overflow (0.5 when the
    /// range has no width).
    static func fraction(_ v: Double, _ low: Double, _ high: Double) -> Double {
        let span = high / 2 - low / 2
        guard span > 0, span.isFinite, v.isFinite else { return 0.5 }
        return Swift.min(Swift.max((v / 2 - low / 2) / span, 0), 1)
    }

    /// The SVG document.
    func render() -> String {
        let all = series.flatMap(\.points).filter { $0.x.isFinite && $0.y.isFinite }
        let left = 70.0, right = 180.0, top = 40.0, bottom = 55.0
        let plotW = width - left - right, plotH = height - top - bottom
        let (xMin, xMax) = SVGPlot.axisRange(all.map(\.x), pad: 0, empty: (0, 1))
        let (yMin, yMax) = SVGPlot.axisRange(all.map(\.y), pad: 0.05, empty: (0, 1))
        func px(_ x: Double) -> Double { left + SVGPlot.fraction(x, xMin, xMax) * plotW }
        func py(_ y: Double) -> Double { top + (1 - SVGPlot.fraction(y, yMin, yMax)) * plotH }
        func f(_ v: Double) -> String { SVGPlot.format4(v) }
        var out: [String] = []
        out.append(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">"
        )
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        out.append("<text x=\"\(f(left + plotW / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(SVGPlot.escape(title))</text>")
        for t in SVGPlot.ticks(xMin, xMax) {
            let x = px(t)
            out.append("<line x1=\"\(f(x))\" y1=\"\(f(top))\" x2=\"\(f(x))\" y2=\"\(f(top + plotH))\" stroke=\"#e6e6e6\"/>")
            out.append("<text x=\"\(f(x))\" y=\"\(f(top + plotH + 18))\" text-anchor=\"middle\">\(SVGPlot.label(t))</text>")
        }
        for t in SVGPlot.ticks(yMin, yMax) {
            let y = py(t)
            out.append("<line x1=\"\(f(left))\" y1=\"\(f(y))\" x2=\"\(f(left + plotW))\" y2=\"\(f(y))\" stroke=\"#e6e6e6\"/>")
            out.append("<text x=\"\(f(left - 8))\" y=\"\(f(y + 4))\" text-anchor=\"end\">\(SVGPlot.label(t))</text>")
        }
        out.append("<rect x=\"\(f(left))\" y=\"\(f(top))\" width=\"\(f(plotW))\" height=\"\(f(plotH))\" fill=\"none\" stroke=\"black\"/>")
        out.append("<text x=\"\(f(left + plotW / 2))\" y=\"\(f(height - 12))\" text-anchor=\"middle\">\(SVGPlot.escape(xLabel))</text>")
        out.append(
            "<text x=\"18\" y=\"\(f(top + plotH / 2))\" text-anchor=\"middle\" transform=\"rotate(-90 18 \(f(top + plotH / 2)))\">\(SVGPlot.escape(yLabel))</text>"
        )
        for (i, s) in series.enumerated() {
            let color = SVGPlot.palette[i % SVGPlot.palette.count]
            let pts = s.points.filter { $0.x.isFinite && $0.y.isFinite }.sorted { $0.x < $1.x }
            let path = pts.map { "\(f(px($0.x))),\(f(py($0.y)))" }.joined(separator: " ")
            out.append("<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"1.8\"/>")
            for p in pts {
                out.append("<circle cx=\"\(f(px(p.x)))\" cy=\"\(f(py(p.y)))\" r=\"2.5\" fill=\"\(color)\"/>")
            }
            let ly = top + 14 + Double(i) * 20
            out.append(
                "<line x1=\"\(f(left + plotW + 14))\" y1=\"\(f(ly))\" x2=\"\(f(left + plotW + 38))\" y2=\"\(f(ly))\" stroke=\"\(color)\" stroke-width=\"2\"/>"
            )
            out.append("<text x=\"\(f(left + plotW + 44))\" y=\"\(f(ly + 4))\">\(SVGPlot.escape(s.name))</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
