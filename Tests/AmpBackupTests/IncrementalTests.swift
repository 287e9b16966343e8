@testable import AmpBackup
import Testing

@Suite("incremental base backups on PostgreSQL 17+: when, on what, and what retention keeps (pure)")
struct IncrementalTests {
    let seg: UInt64 = 16 << 20

    func backup(_ id: String, _ finished: Double, parent: String? = nil, version: String = "18", tli: UInt32 = 1) -> BaseBackup {
        let n = UInt64(finished)
        return BaseBackup(id: id, started: finished - 1, finished: finished, timeline: tli, startLSN: LSN(n * seg), endLSN: LSN(n * seg + 100),
                          postgresVersion: version, sizeBytes: 1 << 20, parent: parent)
    }

    @Test("17+ builds on the newest backup while the chain is short and its full backup recent; else a full one")
    func decision() {
        let full = backup("F", 1000)
        #expect(IncrementalPlan.parent(backups: [full], major: 18, timeline: 1, now: 2000, window: 86_400, fresh: false)?.id == "F")
        #expect(IncrementalPlan.parent(backups: [full], major: 16, timeline: 1, now: 2000, window: 86_400, fresh: false) == nil, "16 has none")
        #expect(IncrementalPlan.parent(backups: [], major: 18, timeline: 1, now: 2000, window: 86_400, fresh: false) == nil, "nothing to build on")
        #expect(IncrementalPlan.parent(backups: [full], major: 18, timeline: 1, now: 2000, window: 86_400, fresh: true) == nil, "after a gap")
        #expect(IncrementalPlan.parent(backups: [full], major: 18, timeline: 2, now: 2000, window: 86_400, fresh: false) == nil, "another timeline")
        #expect(IncrementalPlan.parent(backups: [backup("F", 1000, version: "17")], major: 18, timeline: 1, now: 2000, window: 86_400, fresh: false) == nil)
        #expect(IncrementalPlan.parent(backups: [full], major: 18, timeline: 1, now: 1000 + 43_201, window: 86_400, fresh: false) == nil, "full older than half the window")
        var chain = [full]
        for i in 1...IncrementalPlan.maximumChain { chain.append(backup("I\(i)", 1000 + Double(i), parent: chain.last?.id)) }
        #expect(IncrementalPlan.parent(backups: Array(chain.dropLast()), major: 18, timeline: 1, now: 2000, window: 86_400, fresh: false)?.id == "I5")
        #expect(IncrementalPlan.parent(backups: chain, major: 18, timeline: 1, now: 2000, window: 86_400, fresh: false) == nil, "chain at its bound")
    }

    @Test("a chain is found full first; a missing link makes it unrestorable")
    func chains() {
        let all = [backup("F", 1), backup("I1", 2, parent: "F"), backup("I2", 3, parent: "I1")]
        #expect(all[2].chain(in: all)?.map(\.id) == ["F", "I1", "I2"])
        #expect(all[0].chain(in: all)?.map(\.id) == ["F"])
        #expect(all[2].chain(in: [all[0], all[2]]) == nil)
        let loop = [backup("A", 1, parent: "B"), backup("B", 2, parent: "A")]
        #expect(loop[1].chain(in: loop) == nil, "a cycle in damaged records ends")
    }

    @Test("retention keeps the whole chain of the oldest backup it keeps")
    func retention() {
        let all = [backup("F1", 100), backup("I1", 200, parent: "F1"), backup("I2", 300, parent: "I1"), backup("F2", 400), backup("I3", 500, parent: "F2")]
        // The window starts after I2: I2 is the newest before it, and it needs F1 and I1.
        let plan = RetentionPlan(backups: all, walBytesBySegment: [:], now: 1000, window: 1000 - 350, maxBytes: 1 << 40)
        #expect(plan.removeBackups.isEmpty, "\(plan.removeBackups)")
        let later = RetentionPlan(backups: all, walBytesBySegment: [:], now: 1000, window: 1000 - 450, maxBytes: 1 << 40)
        #expect(later.removeBackups == ["F1", "I1", "I2"], "F2 is full: what came before it goes")
        let tight = RetentionPlan(backups: all, walBytesBySegment: [:], now: 1000, window: 10_000, maxBytes: 1 << 20)
        #expect(tight.removeBackups == ["F1", "I1", "I2"], "the size bound keeps the newest backup's chain: \(tight.removeBackups)")
    }
}
