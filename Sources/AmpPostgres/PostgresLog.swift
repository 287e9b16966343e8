import Logging

/// A PostgreSQL message severity, as written in its log output.
///
/// See <https://www.postgresql.org/docs/15/runtime-config-logging.html#RUNTIME-CONFIG-SEVERITY-LEVELS>.
public enum PostgresSeverity: String, Sendable, CaseIterable {
    case debug5 = "DEBUG5", debug4 = "DEBUG4", debug3 = "DEBUG3", debug2 = "DEBUG2", debug1 = "DEBUG1"
    case debug = "DEBUG"
    case info = "INFO", notice = "NOTICE", warning = "WARNING", error = "ERROR", log = "LOG"
    case fatal = "FATAL", panic = "PANIC"

    /// The syslog priority PostgreSQL itself uses for this severity (`syslog` destination):
    /// DEBUG→7, LOG/INFO→6, NOTICE/WARNING→5, ERROR→4, FATAL→3, PANIC→2.
    public var syslogPriority: Int {
        switch self {
        case .debug5, .debug4, .debug3, .debug2, .debug1, .debug: return 7
        case .info, .log: return 6
        case .notice, .warning: return 5
        case .error: return 4
        case .fatal: return 3
        case .panic: return 2
        }
    }

    /// The swift-log level with the same syslog priority.
    public var loggerLevel: Logger.Level {
        switch syslogPriority {
        case 7: return .debug
        case 6: return .info
        case 5: return .notice
        case 4: return .warning
        case 3: return .error
        default: return .critical
        }
    }
}

/// One PostgreSQL log entry: a primary line and the lines that belong to it
/// (`DETAIL`, `HINT`, `CONTEXT`, `STATEMENT`, `QUERY`, `LOCATION` and tab-indented continuations).
public struct PostgresLogEntry: Sendable, Equatable {
    /// The severity, or `nil` for output that is not a PostgreSQL message (e.g. `initdb` chatter).
    public var severity: PostgresSeverity?
    /// PID of the PostgreSQL process that wrote it, when the prefix names it.
    public var pid: Int?
    /// SQLSTATE code, when the prefix names it and it is not `00000`.
    public var sqlState: String?
    /// The primary message, without prefix and severity.
    public var message: String
    /// Every line of the entry as written, continuation lines included.
    public var lines: [String]

    /// The whole entry as one text: the message, then `DETAIL: …` and the other parts.
    public var text: String {
        ([message] + continuation).joined(separator: "\n")
    }

    /// The continuation parts without their prefix, e.g. `STATEMENT:  select …`.
    public var continuation: [String] {
        lines.dropFirst().map { line in
            if let parsed = PostgresLogParser.parse(line), parsed.severityToken != nil {
                return "\(parsed.severityToken ?? ""):  \(parsed.message)"
            }
            return line
        }
    }

    /// Whether this is the server announcing crash recovery ("database system was interrupted …",
    /// "… automatic recovery in progress"), which can take long. The server writes these in
    /// English unless `lc_messages` says otherwise; amp's clusters use the C locale.
    public var announcesRecovery: Bool {
        severity == .log
            && (message.hasPrefix("database system was interrupted") || message.contains("automatic recovery in progress"))
    }

    public init(severity: PostgresSeverity?, pid: Int?, sqlState: String?, message: String, lines: [String]) {
        self.severity = severity
        self.pid = pid
        self.sqlState = sqlState
        self.message = message
        self.lines = lines
    }
}

/// Parses PostgreSQL's stderr log lines.
///
/// The server is started with `log_line_prefix` = ``PostgresLogParser/linePrefix``
/// (`"[%p] %e "`: PID and SQLSTATE). Lines with another prefix still parse: the severity is
/// found as the first `WORD:  ` (two spaces, as PostgreSQL writes it) after the prefix.
public enum PostgresLogParser {
    /// The `log_line_prefix` the library sets unless the caller chooses another.
    public static let linePrefix = "[%p] %e "

    static let continuationTokens: Set<String> = ["DETAIL", "HINT", "QUERY", "CONTEXT", "LOCATION", "STATEMENT"]

    struct ParsedLine {
        var severityToken: String?
        var pid: Int?
        var sqlState: String?
        var message: String
    }

    static func parse(_ line: String) -> ParsedLine? {
        // Find "TOKEN:  " where TOKEN is a known severity or continuation keyword.
        var searchStart = line.startIndex
        while let colon = line[searchStart...].firstRange(of: ":  ") {
            let before = line[..<colon.lowerBound]
            let tokenStart = before.lastIndex(of: " ").map { line.index(after: $0) } ?? line.startIndex
            let token = String(line[tokenStart..<colon.lowerBound])
            if PostgresSeverity(rawValue: token) != nil || continuationTokens.contains(token) {
                let prefix = line[..<tokenStart]
                var parsed = ParsedLine(severityToken: token, message: String(line[colon.upperBound...]))
                parsePrefix(prefix, into: &parsed)
                return parsed
            }
            searchStart = colon.upperBound
        }
        return nil
    }

    private static func parsePrefix(_ prefix: Substring, into parsed: inout ParsedLine) {
        // "[1234] 42P01 " or any prefix containing "[pid]".
        if let open = prefix.firstIndex(of: "["), let close = prefix[open...].firstIndex(of: "]") {
            parsed.pid = Int(prefix[prefix.index(after: open)..<close])
        }
        for word in prefix.split(separator: " ") where word.count == 5 {
            if word.allSatisfy({ $0.isNumber || ($0.isUppercase && $0.isASCII) }), word.contains(where: \.isNumber) {
                parsed.sqlState = word == "00000" ? nil : String(word)
            }
        }
    }
}

/// Groups log lines into entries.
///
/// A pure state machine: feed it the lines of each read from PostgreSQL's output, and it
/// returns the entries those lines complete. PostgreSQL writes each entry with one `write`,
/// so the end of a read also ends the entry being collected.
public struct PostgresLogAssembler: Sendable {
    private var current: PostgresLogEntry?

    public init() {}

    /// Consumes the lines of one read and returns the finished entries, in order.
    public mutating func feed(_ lines: [String]) -> [PostgresLogEntry] {
        var finished: [PostgresLogEntry] = []
        for line in lines {
            if line.hasPrefix("\t"), current != nil {
                current?.lines.append(line)
                continue
            }
            guard let parsed = PostgresLogParser.parse(line), let token = parsed.severityToken else {
                if let c = current { finished.append(c) }
                current = nil
                if !line.isEmpty {
                    finished.append(PostgresLogEntry(severity: nil, pid: nil, sqlState: nil, message: line, lines: [line]))
                }
                continue
            }
            if PostgresLogParser.continuationTokens.contains(token) {
                if current != nil, current?.pid == parsed.pid || parsed.pid == nil {
                    current?.lines.append(line)
                } else {
                    if let c = current { finished.append(c) }
                    current = PostgresLogEntry(
                        severity: .log, pid: parsed.pid, sqlState: parsed.sqlState,
                        message: "\(token):  \(parsed.message)", lines: [line])
                }
                continue
            }
            if let c = current { finished.append(c) }
            current = PostgresLogEntry(
                severity: PostgresSeverity(rawValue: token), pid: parsed.pid, sqlState: parsed.sqlState,
                message: parsed.message, lines: [line])
        }
        if let c = current { finished.append(c) }
        current = nil
        return finished
    }
}

/// What pgaudit logged in one entry: `AUDIT: SESSION,1,1,DDL,CREATE TABLE,TABLE,public.t,…`.
public struct AuditRecord: Sendable, Equatable {
    /// `SESSION` or `OBJECT`.
    public var type: String
    /// `DDL`, `ROLE`, `READ`, `WRITE`, `FUNCTION`, `MISC`, `MISC_SET`.
    public var auditClass: String
    /// The command tag (`CREATE TABLE`, `ALTER ROLE`).
    public var command: String

    /// The record of an entry whose message is pgaudit's, else nil. See
    /// <https://github.com/pgaudit/pgaudit/blob/1.7.0/README.md#format>.
    public init?(message: String) {
        guard message.hasPrefix("AUDIT: ") else { return nil }
        // The first five fields never hold a comma; the statement after them may.
        let fields = message.dropFirst(7).split(separator: ",", maxSplits: 5, omittingEmptySubsequences: false)
        guard fields.count >= 5, fields[0] == "SESSION" || fields[0] == "OBJECT", !fields[3].isEmpty,
              fields[3].allSatisfy({ $0.isUppercase || $0 == "_" }) else { return nil }
        type = String(fields[0])
        auditClass = String(fields[3])
        command = String(fields[4].prefix(64))
    }
}
