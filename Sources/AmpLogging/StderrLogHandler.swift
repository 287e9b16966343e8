#if canImport(Glibc)
import Glibc
#endif
import Logging
import Synchronization


/// A swift-log handler that writes one line per message to standard error:
///
/// ```
/// 15:41:11.123 INFO  ampd: starting PostgreSQL pid=5870
/// 15:41:11.140 LOG   postgres[5870]: database system is ready to accept connections
/// ```
///
/// PostgreSQL's own entries (metadata `source=postgres`) show PostgreSQL's severity and PID;
/// their continuation lines (DETAIL, HINT, STATEMENT …) follow, indented. Each entry is
/// written with a single `write(2)`.
public struct StderrLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let label: String
    private let colour: Bool
    private static let lock = Mutex(())

    public init(label: String, level: Logger.Level = .info, colour: Bool) {
        self.label = label
        self.logLevel = level
        self.colour = colour
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let message = event.message
        let level = event.level
        var merged = self.metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let source = merged.removeValue(forKey: "source").map { "\($0)" } ?? label
        let pgSeverity = merged.removeValue(forKey: "pg_severity").map { "\($0)" }
        let pgPid = merged.removeValue(forKey: "pg_pid").map { "\($0)" }
        merged.removeValue(forKey: "pg_sqlstate")
        let levelText = (pgSeverity ?? Self.name(level)).padding(5)
        let who = pgPid.map { "\(source)[\($0)]" } ?? source
        var lines = "\(message)".split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var first = lines.isEmpty ? "" : lines.removeFirst()
        if !merged.isEmpty {
            first += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        let (on, off) = colour ? (Self.colourCode(level), "\u{1B}[0m") : ("", "")
        var text = "\(Self.timestamp()) \(on)\(levelText)\(off) \(who): \(first)\n"
        for l in lines { text += "    \(l.hasPrefix("\t") ? String(l.dropFirst()) : l)\n" }
        Self.lock.withLock { _ in
            var bytes = Array(text.utf8)
            var offset = 0
            while offset < bytes.count {
                let n = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress?.advanced(by: offset), $0.count - offset) }
                if n < 0 { if errno == EINTR { continue }; break }
                offset += n
            }
        }
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace: return "TRACE"
        case .debug: return "DEBUG"
        case .info: return "INFO"
        case .notice: return "NOTE"
        case .warning: return "WARN"
        case .error: return "ERROR"
        case .critical: return "CRIT"
        }
    }

    static func colourCode(_ level: Logger.Level) -> String {
        switch level {
        case .trace, .debug: return "\u{1B}[2m"
        case .info: return "\u{1B}[32m"
        case .notice: return "\u{1B}[36m"
        case .warning: return "\u{1B}[33m"
        case .error, .critical: return "\u{1B}[1;31m"
        }
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = ts.tv_sec
        var tmValue = tm()
        localtime_r(&t, &tmValue)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        let ms = Int(ts.tv_nsec / 1_000_000)
        let msText = ms < 10 ? "00\(ms)" : ms < 100 ? "0\(ms)" : "\(ms)"
        return "\(two(tmValue.tm_hour)):\(two(tmValue.tm_min)):\(two(tmValue.tm_sec)).\(msText)"
    }
}

extension String {
    fileprivate func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

/// Parses a log level name (`trace`, `debug`, `info`, `notice`, `warning`, `error`, `critical`).
public func parseLogLevel(_ text: String) -> Logger.Level? {
    Logger.Level(rawValue: text.lowercased())
}
