#if canImport(Glibc)
import Glibc
#endif
import CSystemd
import Logging

/// Whether this process's standard error is connected to the journal: `$JOURNAL_STREAM`
/// names the device and inode of the stream systemd connected, and they match fd 2 (so a
/// child whose stderr was redirected elsewhere does not log natively by mistake).
/// See <https://www.freedesktop.org/software/systemd/man/252/systemd.exec.html#%24JOURNAL_STREAM>.
public func isStandardErrorJournal(environment: [String: String]) -> Bool {
    guard let value = environment["JOURNAL_STREAM"], let colon = value.firstIndex(of: ":"),
          let device = UInt64(value[..<colon]), let inode = UInt64(value[value.index(after: colon)...])
    else { return false }
    var st = stat()
    guard fstat(2, &st) == 0 else { return false }
    return UInt64(st.st_dev) == device && UInt64(st.st_ino) == inode
}

/// A swift-log handler that writes each message as one structured journal entry through
/// `sd_journal_sendv(3)` (<https://www.freedesktop.org/software/systemd/man/252/sd_journal_sendv.html>).
///
/// Fields:
/// - `MESSAGE=` the whole message, newlines included (one entry, however many lines), and for
///   the daemon's own messages their metadata as ` key=value` (as on standard error);
/// - `PRIORITY=` from the level: trace/debug 7, info 6, notice 5, warning 4, error 3, critical 2
///   (PostgreSQL's own entries arrive with the level that has PostgreSQL's syslog priority);
/// - `SYSLOG_IDENTIFIER=` the metadata value `source` (e.g. `postgres`), else the identifier
///   given here (`ampd`); `SYSLOG_PID=` from `pg_pid`, so `journalctl` shows `postgres[PID]`;
/// - every other metadata key in upper case (`pg_severity` → `PG_SEVERITY=`), plus the fixed
///   fields given here (e.g. `AMP_PROJECT=`, `AMP_DIR=`);
/// - `CODE_FILE=`, `CODE_LINE=`, `CODE_FUNC=` for the daemon's own messages.
///
/// If the journal cannot be reached, the entry goes to standard error instead.
public struct JournalLogHandler: LogHandler {
    public var logLevel: Logger.Level
    public var metadata: Logger.Metadata = [:]
    public let label: String
    private let identifier: String
    private let fixedFields: [(String, String)]

    /// - Parameters:
    ///   - identifier: `SYSLOG_IDENTIFIER` of messages without a `source`.
    ///   - fields: fields added to every entry; names are normalised like metadata keys.
    public init(label: String, level: Logger.Level = .info, identifier: String, fields: [(String, String)] = []) {
        self.label = label
        self.logLevel = level
        self.identifier = identifier
        self.fixedFields = fields.map { (Self.fieldName($0.0), $0.1) }
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let source = merged.removeValue(forKey: "source").map { "\($0)" }
        // The daemon's own context (key=value) also goes into the text, so that plain
        // `journalctl` shows it; PostgreSQL's entries carry theirs in fields only.
        var message = "\(event.message)"
        if source == nil, !merged.isEmpty {
            message += " " + merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        }
        var fields: [(String, String)] = [
            ("MESSAGE", message),
            ("PRIORITY", "\(Self.priority(event.level))"),
            ("SYSLOG_IDENTIFIER", source ?? identifier),
        ]
        if source == nil {
            fields += [("CODE_FILE", event.file), ("CODE_LINE", "\(event.line)"), ("CODE_FUNC", event.function)]
        }
        if let pid = merged["pg_pid"] { fields.append(("SYSLOG_PID", "\(pid)")) }
        fields += fixedFields
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) {
            fields.append((Self.fieldName(key), "\(value)"))
        }
        if !Self.send(fields) {
            let line = "\(source ?? identifier): \(event.message)\n"
            _ = line.withCString { write(2, $0, strlen($0)) }
        }
    }

    /// The syslog priority of a swift-log level.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: return 7
        case .info: return 6
        case .notice: return 5
        case .warning: return 4
        case .error: return 3
        case .critical: return 2
        }
    }

    /// A valid journal field name for `key`: upper case, `[A-Z0-9_]` only, not starting with
    /// `_` or a digit (those are reserved or invalid), at most 64 characters.
    public static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber) ? c : "_"
        })
        while name.hasPrefix("_") { name.removeFirst() }
        if name.isEmpty || name.first?.isNumber == true { name = "F" + name }
        return String(name.prefix(64))
    }

    /// Sends one entry; `false` when the journal did not take it.
    static func send(_ fields: [(String, String)]) -> Bool {
        // One buffer holding every "NAME=value", and iovecs pointing into it.
        var buffer: [UInt8] = []
        var ranges: [(Int, Int)] = []
        for (name, value) in fields {
            let start = buffer.count
            buffer += Array(name.utf8)
            buffer.append(UInt8(ascii: "="))
            buffer += Array(value.utf8)
            ranges.append((start, buffer.count - start))
        }
        return buffer.withUnsafeMutableBytes { raw -> Bool in
            guard let base = raw.baseAddress else { return false }
            var vectors = ranges.map { iovec(iov_base: base + $0.0, iov_len: $0.1) }
            return vectors.withUnsafeMutableBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) } >= 0
        }
    }
}
