#if canImport(Glibc)
import Glibc
#endif
import SystemSupport

/// What the archive can restore: from the oldest base backup whose WAL runs on without a gap
/// to the archive's end, to that end. Pure: computed from the listing.
public struct ArchiveCoverage: Sendable, Equatable {
    /// The earliest restorable moment (seconds since the epoch), nil when nothing is.
    public var from: Double?
    /// The latest restorable moment.
    public var to: Double?
    /// The first segment of the unbroken run of WAL that ends at the archive's end.
    public var continuousFromSegment: UInt64?
    /// The backups that reach the archive's end, oldest first.
    public var usable: [BaseBackup]
    /// Why the newest WAL is not reachable from any backup (a gap, or no backup yet): a new
    /// base backup is needed.
    public var problem: String?

    /// - Parameters:
    ///   - backups: the base backups, oldest first.
    ///   - files: the archive's WAL files.
    ///   - history: the newest timeline's history.
    ///   - end: the moment the archive reaches (now while the archiver is caught up, else its
    ///     last write).
    public init(backups: [BaseBackup], files: [WALFile], history: TimelineHistory, end: Double?, segmentSize: UInt64 = WALFile.defaultSegmentSize) {
        let present = Set(files.filter { $0.kind != .history }.map(\.segment))
        var continuous: UInt64? = nil
        if let newest = present.max() {
            var s = newest
            while s > 0, present.contains(s - 1) { s -= 1 }
            continuous = s
        }
        continuousFromSegment = continuous
        usable = backups.filter { b in
            guard let continuous, history.contains(timeline: b.timeline, upTo: b.endLSN) else { return false }
            return b.endLSN.segment(size: segmentSize) >= continuous
        }
        if let first = usable.first {
            from = first.finished
            to = max(end ?? first.finished, usable.last?.finished ?? first.finished)
            problem = nil
        } else if let newest = backups.last {
            from = newest.finished
            to = newest.finished
            problem = continuous == nil
                ? "the archive holds no WAL yet: only the moment of backup \(newest.id) can be restored"
                : "the archive's WAL has a gap after backup \(newest.id) (it continues from segment \(WALFile.segmentName(timeline: history.timeline, segment: continuous ?? 0)) on): a new base backup is needed"
        } else {
            from = nil
            to = nil
            problem = "no base backup yet"
        }
    }
}

/// Which base backups and WAL the retention settings remove: everything older than the
/// window except the newest backup before it (so that the window's first moment stays
/// restorable), then the oldest until the archive fits its size bound. The newest backup and
/// the WAL it needs always stay. Pure.
public struct RetentionPlan: Sendable, Equatable {
    /// Backups to remove, oldest first.
    public var removeBackups: [String]
    /// WAL segments below this number go (nil: none).
    public var removeSegmentsBelow: UInt64?
    /// Restore points older than this go.
    public var removePointsBefore: Double?

    public init(backups: [BaseBackup], walBytesBySegment: [UInt64: UInt64], now: Double, window: Double, maxBytes: UInt64, segmentSize: UInt64 = WALFile.defaultSegmentSize) {
        guard !backups.isEmpty else {
            removeBackups = []
            removeSegmentsBelow = nil
            removePointsBefore = nil
            return
        }
        let horizon = now - window
        var firstKept = backups.lastIndex { $0.finished < horizon } ?? 0
        // Size: drop the oldest kept while the archive is over its bound (never the newest).
        func bytes(from index: Int) -> UInt64 {
            let bound = backups[index].startLSN.segment(size: segmentSize)
            let base = backups[index...].reduce(UInt64(0)) { $0 &+ $1.sizeBytes }
            let wal = walBytesBySegment.filter { $0.key >= bound }.values.reduce(UInt64(0), &+)
            return base &+ wal
        }
        while firstKept < backups.count - 1, bytes(from: firstKept) > maxBytes { firstKept += 1 }
        // An incremental backup needs every backup it is built on (its parent is the one
        // before it): keep back to the full backup its chain starts from.
        while firstKept > 0, backups[firstKept].parent != nil { firstKept -= 1 }
        removeBackups = backups[..<firstKept].map(\.id)
        let bound = backups[firstKept].startLSN.segment(size: segmentSize)
        removeSegmentsBelow = walBytesBySegment.keys.contains { $0 < bound } ? bound : nil
        removePointsBefore = backups[firstKept].finished
    }

    public var isEmpty: Bool { removeBackups.isEmpty && removeSegmentsBelow == nil }
}

extension BackupArchive {
    /// The bytes of each WAL segment number in the archive.
    public func walBytesBySegment() -> [UInt64: UInt64] {
        var out: [UInt64: UInt64] = [:]
        for f in walFiles() where f.kind != .history {
            var st = stat()
            if stat(path(of: f), &st) == 0 { out[f.segment, default: 0] &+= UInt64(clamping: st.st_blocks) &* 512 }
        }
        return out
    }

    /// Carries out a retention plan: backups are renamed to `.removing-ID` before they are
    /// removed (a removal cut short is never taken for a backup), then WAL below the bound.
    /// - Returns: what was removed, in words.
    @discardableResult
    public func apply(_ plan: RetentionPlan) -> [String] {
        var done: [String] = []
        for id in plan.removeBackups {
            let from = baseDirectory + "/" + id, aside = baseDirectory + "/.removing-" + id
            guard rename(from, aside) == 0 else { continue }
            try? removeTree(aside)
            done.append("base backup \(id)")
        }
        if let bound = plan.removeSegmentsBelow {
            var count = 0
            for f in walFiles() where f.kind != .history && f.segment < bound {
                if unlink(path(of: f)) == 0 { count += 1 }
            }
            if count > 0 { done.append("\(count) WAL file(s)") }
        }
        if let before = plan.removePointsBefore {
            let points = restorePoints()
            let kept = points.filter { $0.time >= before }
            if kept.count < points.count {
                let text = kept.map { "\($0.name)\t\($0.time)\t\($0.lsn)\t\($0.timeline)\n" }.joined()
                try? writeOwned(restorePointsFile, text)
            }
        }
        // Leftovers of removals or backups cut short.
        for name in listDirectory(baseDirectory) where name.hasPrefix(".removing-") { try? removeTree(baseDirectory + "/" + name) }
        return done
    }
}

/// What `restore --to` names: the archive's end, a moment, or a restore point.
public enum RestoreTarget: Sendable, Equatable, CustomStringConvertible {
    case latest
    /// Seconds since the epoch.
    case time(Double)
    case point(String)

    /// Parses `latest`, an ISO 8601 time (`2026-12-04T22:30:00Z`, `2026-12-04 22:30:00+01:00`;
    /// without a zone: UTC), `N seconds|minutes|hours|days ago` (`10 minutes ago`, `90s ago`)
    /// or a restore point's name. The error says what is accepted.
    public static func parse(_ text: String, now: Double) -> Result<RestoreTarget, BackupError> {
        let t = text.trimmingWhitespace
        if t == "latest" || t == "now" { return .success(.latest) }
        if t.hasSuffix("ago"), t.first?.isNumber == true {
            let amount = t.dropLast(3).trimmingWhitespace
            guard let seconds = parseAgo(amount) else {
                return .failure(BackupError(.usage, "--to \(text): not a span such as \"10 minutes ago\", \"90s ago\" or \"2 hours ago\""))
            }
            return .success(.time(now - seconds))
        }
        if t.first?.isNumber == true {
            guard let seconds = parseISOTime(t) else {
                return .failure(BackupError(.usage, "--to \(text): not a time; use ISO 8601 (2026-12-04T22:30:00Z, or with +HH:MM; without a zone it is UTC), \"10 minutes ago\", latest or a restore point's name"))
            }
            return .success(.time(seconds))
        }
        if let problem = BackupArchive.restorePointNameProblem(t) {
            return .failure(BackupError(.usage, "--to \(text): not a time, \"latest\", \"N minutes ago\" or a restore point name (\(problem))"))
        }
        return .success(.point(t))
    }

    public var description: String {
        switch self {
        case .latest: "latest"
        case .time(let s): isoTime(s)
        case .point(let name): "restore point \(name)"
        }
    }

    static func parseAgo(_ text: String) -> Double? {
        let number = text.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(number), value.isFinite, value >= 0 else { return nil }
        let unit = text.dropFirst(number.count).trimmingWhitespace
        let scale: Double
        switch unit {
        case "s", "sec", "secs", "second", "seconds": scale = 1
        case "m", "min", "mins", "minute", "minutes": scale = 60
        case "h", "hour", "hours": scale = 3600
        case "d", "day", "days": scale = 86_400
        default: return nil
        }
        let seconds = value * scale
        return seconds <= 10 * 366 * 86_400 ? seconds : nil
    }

    /// `YYYY-MM-DD[T ]HH:MM[:SS[.fff]][Z|±HH[:MM]]` → seconds since the epoch (UTC when no zone).
    static func parseISOTime(_ text: String) -> Double? {
        let chars = Array(text.utf8)
        var i = 0
        func number(_ digits: Int) -> Int? {
            guard i + digits <= chars.count else { return nil }
            var n = 0
            for _ in 0..<digits {
                let c = chars[i]
                guard c >= 48, c <= 57 else { return nil }
                n = n * 10 + Int(c - 48)
                i += 1
            }
            return n
        }
        func expect(_ c: UInt8) -> Bool {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(45), let month = number(2), expect(45), let day = number(2) else { return nil }
        guard i < chars.count, chars[i] == 84 || chars[i] == 32 else { return nil }  // T or space
        i += 1
        guard let hour = number(2), expect(58), let minute = number(2) else { return nil }
        var second = 0.0
        if expect(58) {
            guard let s = number(2) else { return nil }
            second = Double(s)
            if expect(46) {
                let start = i
                while i < chars.count, chars[i] >= 48, chars[i] <= 57 { i += 1 }
                guard i > start, let fraction = Double("0." + String(decoding: chars[start..<i], as: UTF8.self)) else { return nil }
                second += fraction
            }
        }
        var offset = 0
        if i < chars.count {
            if expect(90) || expect(122) {  // Z
            } else if chars[i] == 43 || chars[i] == 45 {
                let sign = chars[i] == 45 ? -1 : 1
                i += 1
                guard let h = number(2) else { return nil }
                var m = 0
                if expect(58) || (i < chars.count) {
                    guard let mm = number(2) else { return nil }
                    m = mm
                }
                guard h <= 14, m < 60 else { return nil }
                offset = sign * (h * 3600 + m * 60)
            } else {
                return nil
            }
        }
        guard i == chars.count, (1970...9999).contains(year), (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = 0
        let base = timegm(&parts)
        guard base != -1, parts.tm_mday == Int32(day) else { return nil }  // 2026-02-31 normalises: refused
        return Double(base) + second - Double(offset)
    }
}

/// Whether the next base backup is incremental (`pg_basebackup --incremental`, PostgreSQL 17+
/// with `summarize_wal`), and on which backup. Pure.
public enum IncrementalPlan {
    /// At most this many incremental backups follow a full one.
    public static let maximumChain = 6

    /// The backup the next one builds on, or nil for a full backup: on 17+, after a backup of
    /// the same version and timeline, while the chain since the last full backup is shorter
    /// than ``maximumChain`` and that full backup finished within half the window (so
    /// retention, which keeps whole chains, keeps little more than the window), and not when
    /// the archive lost continuity (`fresh`).
    public static func parent(backups: [BaseBackup], major: Int, timeline: UInt32, now: Double, window: Double, fresh: Bool) -> BaseBackup? {
        guard major >= 17, !fresh, let newest = backups.last, newest.timeline == timeline, newest.postgresVersion == "\(major)" else { return nil }
        var chain = 0
        var full: BaseBackup? = nil
        for b in backups.reversed() {
            if b.parent == nil { full = b; break }
            chain += 1
        }
        guard let full, chain < maximumChain, now - full.finished < window / 2 else { return nil }
        return newest
    }
}

extension BaseBackup {
    /// The backups a restore of `self` combines, full first (`[self]` for a full backup); nil
    /// when one of them is missing from `backups`.
    public func chain(in backups: [BaseBackup]) -> [BaseBackup]? {
        var out = [self]
        var next = parent
        while let id = next {
            guard out.count <= backups.count, let b = backups.first(where: { $0.id == id }) else { return nil }
            out.insert(b, at: 0)
            next = b.parent
        }
        return out
    }
}
