#if canImport(Glibc)
import Glibc
#endif

/// A write-ahead log position (`pg_lsn`, written `16/B374D848`).
public struct LSN: Comparable, Hashable, Sendable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses `X/Y` (hexadecimal halves); nil for anything else.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, (1...8).contains(parts[0].count), (1...8).contains(parts[1].count),
              let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16) else { return nil }
        value = high << 32 | low
    }

    public var description: String { String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true) }

    public static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }

    /// The number of the segment holding this position.
    public func segment(size: UInt64 = WALFile.defaultSegmentSize) -> UInt64 { value / size }
}

/// One file of a WAL archive as `pg_receivewal` writes it: a segment
/// (`000000010000000000000003`, 24 hexadecimal digits: timeline, then the segment number in
/// two halves), the segment being written (`….partial`), or a timeline history file
/// (`00000002.history`).
public struct WALFile: Hashable, Sendable {
    /// PostgreSQL's default `--wal-segsize` (amp never changes it).
    public static let defaultSegmentSize: UInt64 = 16 << 20

    public enum Kind: Sendable, Hashable { case segment, partial, history }

    public var name: String
    public var kind: Kind
    public var timeline: UInt32
    /// The segment number (0 for a history file).
    public var segment: UInt64

    /// Parses a file name of the archive; nil for anything else.
    public init?(name: String, segmentSize: UInt64 = WALFile.defaultSegmentSize) {
        self.name = name
        if name.hasSuffix(".history") {
            let stem = name.dropLast(8)
            guard stem.count == 8, stem.allSatisfy(\.isHexDigit), let tli = UInt32(stem, radix: 16) else { return nil }
            kind = .history
            timeline = tli
            segment = 0
            return
        }
        let partial = name.hasSuffix(".partial")
        let stem = partial ? name.dropLast(8) : Substring(name)
        guard stem.count == 24, stem.allSatisfy({ $0.isHexDigit && !$0.isLowercase }),
              let tli = UInt32(stem.prefix(8), radix: 16),
              let log = UInt64(stem.dropFirst(8).prefix(8), radix: 16),
              let seg = UInt64(stem.suffix(8), radix: 16) else { return nil }
        let perLog = 0x1_0000_0000 / segmentSize
        guard seg < perLog else { return nil }
        kind = partial ? .partial : .segment
        timeline = tli
        segment = log * perLog + seg
    }

    /// The file name of segment `segment` on `timeline`.
    public static func segmentName(timeline: UInt32, segment: UInt64, segmentSize: UInt64 = WALFile.defaultSegmentSize) -> String {
        let perLog = 0x1_0000_0000 / segmentSize
        func hex8(_ n: UInt64) -> String {
            let s = String(n, radix: 16, uppercase: true)
            return String(repeating: "0", count: max(0, 8 - s.count)) + s
        }
        return hex8(UInt64(timeline)) + hex8(segment / perLog) + hex8(segment % perLog)
    }
}

/// The ancestry of a timeline, from its history file (`PARENT_TLI<TAB>SWITCHPOINT<TAB>REASON`
/// per line, oldest first): each parent with the position where the next timeline branched.
/// See <https://www.postgresql.org/docs/15/continuous-archiving.html#BACKUP-TIMELINES>.
public struct TimelineHistory: Sendable, Equatable {
    public var timeline: UInt32
    /// The parents, oldest first, each with the position where its child began.
    public var parents: [(timeline: UInt32, switchpoint: LSN)]

    public static func == (a: TimelineHistory, b: TimelineHistory) -> Bool {
        a.timeline == b.timeline && a.parents.map(\.timeline) == b.parents.map(\.timeline) && a.parents.map(\.switchpoint) == b.parents.map(\.switchpoint)
    }

    public init(timeline: UInt32, parents: [(timeline: UInt32, switchpoint: LSN)] = []) {
        self.timeline = timeline
        self.parents = parents
    }

    /// Parses the text of `TLI.history`; comment and blank lines are skipped, a bad line makes it nil.
    public init?(timeline: UInt32, text: String) {
        self.timeline = timeline
        parents = []
        for line in text.split(separator: "\n") {
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            if trimmed.isEmpty || trimmed.hasPrefix("#") { continue }
            let fields = trimmed.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count >= 2, let tli = UInt32(fields[0]), let lsn = LSN(fields[1]) else { return nil }
            parents.append((tli, lsn))
        }
    }

    /// Whether WAL of `timeline` up to `position` lies on this history (so a backup taken
    /// there can be replayed into this timeline).
    public func contains(timeline other: UInt32, upTo position: LSN) -> Bool {
        if other == timeline { return true }
        guard let entry = parents.first(where: { $0.timeline == other }) else { return false }
        return position <= entry.switchpoint
    }

    /// The timeline that holds `segment` on this history.
    public func timeline(ofSegment segment: UInt64, segmentSize: UInt64 = WALFile.defaultSegmentSize) -> UInt32 {
        for entry in parents where segment < entry.switchpoint.segment(size: segmentSize) { return entry.timeline }
        // The switch segment itself is copied into the child timeline.
        return timeline
    }
}
