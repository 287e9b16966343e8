/// The little HTTP a metrics endpoint speaks: the request line of a request, and a response
/// with `Connection: close`. Pure (fuzzed through the tests' bad requests).
public enum MetricsHTTP {
    /// At most this many bytes of request head are read.
    public static let maximumRequest = 8192

    /// What to answer a request whose head is `head` (bytes up to the blank line, or all that
    /// came): 200 with the metrics for `GET /metrics` (`HEAD` too), 404 for another path, 405
    /// for another method, 400 for what is not HTTP/1.x.
    public enum Route: Equatable, Sendable {
        case metrics(headOnly: Bool)
        case status(Int, String)
    }

    public static func route(_ head: [UInt8]) -> Route {
        guard let end = head.firstIndex(of: 13) ?? head.firstIndex(of: 10) else { return .status(400, "Bad Request") }
        let line = String(decoding: head[..<end], as: UTF8.self)
        let parts = line.split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[2].hasPrefix("HTTP/1.") else { return .status(400, "Bad Request") }
        let method = parts[0]
        let path = parts[1].split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        guard method == "GET" || method == "HEAD" else { return .status(405, "Method Not Allowed") }
        guard path == "/metrics" else { return .status(404, "Not Found") }
        return .metrics(headOnly: method == "HEAD")
    }

    /// Whether `bytes` hold a whole request head (ends with a blank line).
    public static func isComplete(_ bytes: [UInt8]) -> Bool {
        let n = bytes.count
        return (n >= 4 && bytes[n - 4] == 13 && bytes[n - 3] == 10 && bytes[n - 2] == 13 && bytes[n - 1] == 10)
            || (n >= 2 && bytes[n - 2] == 10 && bytes[n - 1] == 10)
    }

    /// A whole response.
    public static func response(status: Int, reason: String, contentType: String, body: String, headOnly: Bool = false) -> [UInt8] {
        let bytes = Array(body.utf8)
        let head = "HTTP/1.1 \(status) \(reason)\r\nContent-Type: \(contentType)\r\nContent-Length: \(bytes.count)\r\nConnection: close\r\n\r\n"
        return Array(head.utf8) + (headOnly ? [] : bytes)
    }
}
