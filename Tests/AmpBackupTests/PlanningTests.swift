@testable import AmpBackup
import Testing

@Suite("backup planning: WAL names, timelines, coverage, retention, restore targets (pure)")
struct PlanningTests {
    let seg: UInt64 = 16 << 20

    func backup(_ id: String, finished: Double, start: UInt64, end: UInt64, tli: UInt32 = 1, size: UInt64 = 40 << 20) -> BaseBackup {
        BaseBackup(id: id, started: finished - 1, finished: finished, timeline: tli, startLSN: LSN(start), endLSN: LSN(end), postgresVersion: "15", sizeBytes: size)
    }

    func files(_ segments: ClosedRange<UInt64>, tli: UInt32 = 1, partialLast: Bool = true) -> [WALFile] {
        segments.compactMap { s in
            let name = WALFile.segmentName(timeline: tli, segment: s) + (partialLast && s == segments.upperBound ? ".partial" : "")
            return WALFile(name: name)
        }
    }

    @Test("LSNs parse and print as PostgreSQL does; bad text is refused")
    func lsn() {
        #expect(LSN("16/B374D848")?.value == 0x16_B374_D848)
        #expect(LSN("0/2000028")?.description == "0/2000028")
        #expect(LSN("16/B374D848")?.segment() == 0x16_B374_D848 / (16 << 20))
        for bad in ["", "1", "/1", "1/", "g/1", "123456789/0", "1/2/3"] { #expect(LSN(bad) == nil, "\(bad)") }
    }

    @Test("WAL file names: segments, partial segments and history files; anything else is not WAL")
    func names() {
        let s = WALFile(name: "000000020000000100000003")
        #expect(s?.kind == .segment && s?.timeline == 2 && s?.segment == 256 + 3)
        #expect(WALFile.segmentName(timeline: 2, segment: 259) == "000000020000000100000003")
        #expect(WALFile(name: "000000010000000000000005.partial")?.kind == .partial)
        #expect(WALFile(name: "0000000A.history").map { ($0.kind, $0.timeline) } ?? (.segment, 0) == (.history, 10))
        for bad in ["00000001000000000000000", "000000010000000000000100", "00000001000000000000000g", "x.history", "000000010000000000000003.tmp", "backup_label"] {
            #expect(WALFile(name: bad) == nil, "\(bad)")
        }
    }

    @Test("timeline history: parents and switch points; which timeline holds a segment")
    func history() throws {
        let h = try #require(TimelineHistory(timeline: 3, text: "1\t0/3002E50\tno recovery target specified\n\n2\t0/5000000\tbefore 2026-12-04\n"))
        #expect(h.parents.map(\.timeline) == [1, 2])
        #expect(h.contains(timeline: 1, upTo: LSN(0x300_0000)) && !h.contains(timeline: 1, upTo: LSN(0x400_0000)))
        #expect(h.contains(timeline: 3, upTo: LSN(0x9000_0000)) && !h.contains(timeline: 4, upTo: LSN(0)))
        #expect(h.timeline(ofSegment: 2) == 1 && h.timeline(ofSegment: 3) == 2 && h.timeline(ofSegment: 5) == 3)
        #expect(TimelineHistory(timeline: 2, text: "x\ty\n") == nil)
    }

    @Test("coverage: from the oldest backup with unbroken WAL to the end; a gap needs a new base backup")
    func coverage() {
        let b1 = backup("a", finished: 100, start: 2 * seg, end: 2 * seg + 256)
        let b2 = backup("b", finished: 200, start: 6 * seg, end: 6 * seg + 256)
        let whole = ArchiveCoverage(backups: [b1, b2], files: files(2...8), history: TimelineHistory(timeline: 1), end: 300)
        #expect(whole.from == 100 && whole.to == 300 && whole.problem == nil && whole.usable.map(\.id) == ["a", "b"])
        // Segment 4 is missing: the first backup no longer reaches the end.
        let gap = ArchiveCoverage(backups: [b1, b2], files: files(2...3, partialLast: false) + files(5...8), history: TimelineHistory(timeline: 1), end: 300)
        #expect(gap.from == 200 && gap.usable.map(\.id) == ["b"])
        // A gap after the newest backup: only its own moment is restorable, and it says so.
        let lost = ArchiveCoverage(backups: [b1, b2], files: files(2...6, partialLast: false) + files(8...9), history: TimelineHistory(timeline: 1), end: 300)
        #expect(lost.from == 200 && lost.to == 200 && lost.problem?.contains("gap") == true)
        #expect(ArchiveCoverage(backups: [], files: files(2...3), history: TimelineHistory(timeline: 1), end: 10).problem == "no base backup yet")
        // A backup on a timeline the history left after its end is not usable.
        let branched = TimelineHistory(timeline: 2, parents: [(1, LSN(4 * seg))])
        let late = backup("c", finished: 150, start: 5 * seg, end: 5 * seg + 256, tli: 1)
        #expect(ArchiveCoverage(backups: [b1, late], files: files(2...8), history: branched, end: 300).usable.map(\.id) == ["a"])
    }

    @Test("retention: the window keeps the newest backup before it; the size bound drops the oldest; never the newest or the WAL it needs")
    func retention() {
        let day = 86_400.0
        let bs = [backup("1", finished: 0, start: 2 * seg, end: 2 * seg + 1), backup("2", finished: day, start: 10 * seg, end: 10 * seg + 1),
                  backup("3", finished: 2 * day, start: 20 * seg, end: 20 * seg + 1), backup("4", finished: 3 * day, start: 30 * seg, end: 30 * seg + 1)]
        var wal: [UInt64: UInt64] = [:]
        for s in UInt64(2)...35 { wal[s] = seg }
        // Window 1.5 days at 3 days: backup 2 (at day 1) is the newest before the window's start (day 1.5): kept.
        let byWindow = RetentionPlan(backups: bs, walBytesBySegment: wal, now: 3 * day, window: 1.5 * day, maxBytes: 1 << 50)
        #expect(byWindow.removeBackups == ["1"] && byWindow.removeSegmentsBelow == 10 && byWindow.removePointsBefore == day)
        // Size: 300 MB keeps backup 4 and its WAL (40 MB + 6 × 16 MB), drops the rest.
        let bySize = RetentionPlan(backups: bs, walBytesBySegment: wal, now: 3 * day, window: 30 * day, maxBytes: 300 << 20)
        #expect(bySize.removeBackups == ["1", "2", "3"] && bySize.removeSegmentsBelow == 30)
        // Even a bound nothing fits keeps the newest backup.
        let tiny = RetentionPlan(backups: bs, walBytesBySegment: wal, now: 3 * day, window: 60, maxBytes: 1)
        #expect(tiny.removeBackups == ["1", "2", "3"] && tiny.removeSegmentsBelow == 30)
        #expect(RetentionPlan(backups: [], walBytesBySegment: wal, now: 0, window: 60, maxBytes: 1).isEmpty)
        #expect(RetentionPlan(backups: bs, walBytesBySegment: wal, now: 3 * day, window: 30 * day, maxBytes: 1 << 50).removeBackups.isEmpty)
    }

    @Test("restore targets: latest, ISO times with and without a zone, spans ago, restore point names; each bad one says what is accepted")
    func targets() throws {
        let now = 1_796_423_400.0  // 2026-12-04T22:30:00Z
        #expect(try RestoreTarget.parse("latest", now: now).get() == .latest)
        #expect(try RestoreTarget.parse("2026-12-04T22:30:00Z", now: now).get() == .time(now))
        #expect(try RestoreTarget.parse("2026-12-04 22:30:00", now: now).get() == .time(now))
        #expect(try RestoreTarget.parse("2026-12-04T23:30:00+01:00", now: now).get() == .time(now))
        #expect(try RestoreTarget.parse("2026-12-04T22:30:00.25Z", now: now).get() == .time(now + 0.25))
        #expect(try RestoreTarget.parse("10 minutes ago", now: now).get() == .time(now - 600))
        #expect(try RestoreTarget.parse("90s ago", now: now).get() == .time(now - 90))
        #expect(try RestoreTarget.parse("before-migration", now: now).get() == .point("before-migration"))
        for bad in ["2026-02-31T00:00:00Z", "2026-12-04T25:00:00Z", "10 fortnights ago", "2026-12-04", "a b", "1e9 days ago", ""] {
            if case .success(let t) = RestoreTarget.parse(bad, now: now) { Issue.record("\(bad) parsed as \(t)") }
        }
        #expect(AmpBackup.BackupArchive.postgresTime(now + 0.25) == "2026-12-04 22:30:00.250000+00")
    }

    @Test("backup_manifest's WAL range and amp's record round-trip")
    func manifest() throws {
        let text = """
            { "PostgreSQL-Backup-Manifest-Version": 1,
            "Files": [ { "Path": "backup_label", "Size": 225 } ],
            "WAL-Ranges": [
            { "Timeline": 2, "Start-LSN": "0/4000028", "End-LSN": "0/4000100" }
            ],
            "Manifest-Checksum": "x"}
            """
        let range = try #require(BackupArchive.walRange(manifest: text))
        #expect(range.timeline == 2 && range.start == LSN("0/4000028") && range.end == LSN("0/4000100"))
        #expect(BackupArchive.walRange(manifest: "{}") == nil)
        let b = BaseBackup(id: "x", started: 1.5, finished: 2.5, timeline: 3, startLSN: LSN(5), endLSN: LSN(9), postgresVersion: "15", sizeBytes: 7, verified: 3.5)
        #expect(BaseBackup(id: "x", record: b.record) == b)
        #expect(BaseBackup(id: "x", record: "started=1\n") == nil)
    }
}
