import CCurl

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// libcurl's process-wide initialisation, done once before the first handle (thread-safe: a
/// global `let` is initialised exactly once).
private let curlGlobalInitCode: CURLcode = curl_global_init(3)  // CURL_GLOBAL_ALL = SSL | WIN32

/// One HTTP exchange's answer.
struct HTTPResponse {
    /// The HTTP status.
    var status: Int
    /// Response headers, names lower-cased (the last value wins).
    var headers: [String: String]
    /// The body (empty for HEAD).
    var body: [UInt8]
}

/// The outcome of one attempt: an HTTP answer, or a transport failure with libcurl's code.
enum HTTPAttempt {
    case response(HTTPResponse)
    case failure(code: CURLcode, message: String)
}

/// Buffers a transfer's body and headers; reached from libcurl's C callbacks through userdata.
private final class TransferState {
    var body: [UInt8] = []
    var headers: [String: String] = [:]
    var upload: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)
    var uploadOffset = 0
}

/// A libcurl easy handle that performs one request at a time. Not thread-safe: one per thread.
final class CurlHandle {
    private let handle: UnsafeMutableRawPointer
    private let errorBuffer: UnsafeMutablePointer<CChar>

    /// A fresh handle, or nil when libcurl cannot make one.
    init?() {
        guard curlGlobalInitCode == CURLE_OK, let handle = curl_easy_init() else { return nil }
        self.handle = handle
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    deinit {
        curl_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    /// Performs `method url` with `headers` (`name: value` lines) and an optional body. The
    /// connection is kept for the next request. `connectTimeout` and `stallTimeout` are seconds.
    func perform(
        method: String, url: String, headers: [String], body: UnsafeRawBufferPointer?, connectTimeout: Int,
        stallTimeout: Int
    ) -> HTTPAttempt {
        curl_easy_reset(handle)
        errorBuffer[0] = 0
        let state = TransferState()
        let userdata = Unmanaged.passUnretained(state).toOpaque()
        var list: UnsafeMutablePointer<curl_slist>?
        for line in headers + ["Expect:"] {
            list = curl_slist_append(list, line)
        }
        defer { curl_slist_free_all(list) }

        _ = ckstore_curl_setopt_pointer(handle, CURLOPT_URL, url)
        _ = ckstore_curl_setopt_long(handle, CURLOPT_NOSIGNAL, 1)
        _ = ckstore_curl_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        _ = ckstore_curl_setopt_long(handle, CURLOPT_CONNECTTIMEOUT, connectTimeout)
        _ = ckstore_curl_setopt_long(handle, CURLOPT_LOW_SPEED_LIMIT, 1024)
        _ = ckstore_curl_setopt_long(handle, CURLOPT_LOW_SPEED_TIME, stallTimeout)
        // Larger buffers than the 16/64 KiB defaults: fewer callbacks per 4 MiB blob.
        _ = ckstore_curl_setopt_long(handle, CURLOPT_BUFFERSIZE, 256 << 10)
        _ = ckstore_curl_setopt_long(handle, CURLOPT_UPLOAD_BUFFERSIZE, 1 << 20)
        _ = ckstore_curl_setopt_pointer(handle, CURLOPT_HTTPHEADER, list)
        _ = ckstore_curl_setopt_pointer(handle, CURLOPT_WRITEDATA, userdata)
        _ = ckstore_curl_setopt_pointer(handle, CURLOPT_HEADERDATA, userdata)
        _ = ckstore_curl_setopt_callback(handle, CURLOPT_WRITEFUNCTION) { data, size, count, user in
            let bytes = size * count
            guard let data, let user else { return bytes }
            let state = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
            // A typed buffer appends with one memcpy (a raw buffer would append byte by byte).
            UnsafeMutableRawPointer(data).withMemoryRebound(to: UInt8.self, capacity: bytes) {
                state.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: bytes))
            }
            return bytes
        }
        _ = ckstore_curl_setopt_callback(handle, CURLOPT_HEADERFUNCTION) { data, size, count, user in
            let bytes = size * count
            guard let data, let user else { return bytes }
            let state = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: bytes), as: UTF8.self)
            if line.hasPrefix("HTTP/") {
                state.headers = [:]  // a new response (after 100 Continue or a redirect)
            } else if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingSpaces()
                state.headers[name] = value
                if name == "content-length", let length = Int(value), length > 0, length <= 1 << 30 {
                    state.body.reserveCapacity(length)
                }
            }
            return bytes
        }
        switch method {
        case "GET":
            _ = ckstore_curl_setopt_long(handle, CURLOPT_HTTPGET, 1)
        case "HEAD":
            _ = ckstore_curl_setopt_long(handle, CURLOPT_NOBODY, 1)
        default:
            _ = ckstore_curl_setopt_pointer(handle, CURLOPT_CUSTOMREQUEST, method)
        }
        if let body {
            state.upload = body
            _ = ckstore_curl_setopt_long(handle, CURLOPT_UPLOAD, 1)
            _ = ckstore_curl_setopt_off_t(handle, CURLOPT_INFILESIZE_LARGE, curl_off_t(body.count))
            _ = ckstore_curl_setopt_pointer(handle, CURLOPT_READDATA, userdata)
            _ = ckstore_curl_setopt_callback(handle, CURLOPT_READFUNCTION) { buffer, size, count, user in
                guard let buffer, let user else { return 0 }
                let state = Unmanaged<TransferState>.fromOpaque(user).takeUnretainedValue()
                let n = min(size * count, state.upload.count - state.uploadOffset)
                if n > 0, let base = state.upload.baseAddress {
                    UnsafeMutableRawPointer(buffer).copyMemory(from: base + state.uploadOffset, byteCount: n)
                    state.uploadOffset += n
                }
                return n
            }
            if method != "PUT" {
                // CURLOPT_UPLOAD makes a PUT; keep the custom verb for anything else.
                _ = ckstore_curl_setopt_pointer(handle, CURLOPT_CUSTOMREQUEST, method)
            }
        }

        let code = withExtendedLifetime(state) { curl_easy_perform(handle) }
        guard code == CURLE_OK else {
            let detail = String(cString: errorBuffer)
            let message = detail.isEmpty ? String(cString: curl_easy_strerror(code)) : detail
            return .failure(code: code, message: "curl: \(message.trimmingSpaces())")
        }
        var status = 0
        _ = ckstore_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return .response(HTTPResponse(status: status, headers: state.headers, body: state.body))
    }

    /// Whether a transport failure is worth retrying: timeouts, refused or reset connections,
    /// truncated or empty answers, name resolution (which can be transient).
    static func isRetryable(_ code: CURLcode) -> Bool {
        switch code {
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_CONNECT, CURLE_OPERATION_TIMEDOUT, CURLE_SEND_ERROR,
            CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR, CURLE_HTTP2,
            CURLE_HTTP2_STREAM:
            return true
        default:
            return false
        }
    }
}
