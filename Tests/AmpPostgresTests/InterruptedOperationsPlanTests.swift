import AmpPostgres
import Testing

@Suite("InterruptedOperations: names and the plan (pure)")
struct InterruptedOperationsPlanTests {
    typealias Ops = InterruptedOperations

    func entry(_ name: String, major: Int? = 15, changed: Int = 0) -> Ops.Entry {
        Ops.Entry(path: "/p/.amp/" + name, kind: Ops.kind(of: name) ?? .removing, clusterMajor: major, changed: changed)
    }

    @Test("names: each operation's scratch copy, nothing else")
    func names() {
        #expect(Ops.kind(of: ".restore-12") == .restoreStaging)
        #expect(Ops.kind(of: ".before-restore-12") == .beforeRestore)
        #expect(Ops.kind(of: ".before-reset-12") == .beforeReset)
        #expect(Ops.kind(of: ".upgrade-18") == .upgradeWork)
        #expect(Ops.kind(of: ".upgrade-source-15") == .upgradeSource)
        #expect(Ops.kind(of: ".removing-metadb-1-0") == .removing)
        for other in ["metadb", "rollback", ".restore-", ".restore-x", ".upgrade-18a", "config.toml", ".removing-", "snapshots", ".before-reset"] {
            #expect(Ops.kind(of: other) == nil, "\(other)")
        }
    }

    @Test("copies nothing refers to go; one kept cluster goes back; two are left; an older .upgrade-N becomes the rollback copy, a newer one goes")
    func plan() {
        let rollback = "/p/.amp/rollback"
        #expect(Ops.plan([entry(".restore-1"), entry(".upgrade-source-15"), entry(".removing-x", major: nil)], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: [])
            == [.remove("/p/.amp/.restore-1"), .remove("/p/.amp/.upgrade-source-15"), .remove("/p/.amp/.removing-x")])
        // A reset cut before or after initdb: the kept cluster goes back either way.
        #expect(Ops.plan([entry(".before-reset-7")], clusterMajor: nil, rollbackDirectory: rollback, rollbackNames: []) == [.rollBack(from: "/p/.amp/.before-reset-7")])
        #expect(Ops.plan([entry(".before-restore-7"), entry(".restore-7")], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: [])
            == [.rollBack(from: "/p/.amp/.before-restore-7"), .remove("/p/.amp/.restore-7")])
        // Two kept clusters, or one without a cluster: left for the user.
        let two = Ops.plan([entry(".before-restore-1"), entry(".before-reset-2")], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: [])
        #expect(two.allSatisfy { if case .leave = $0 { true } else { false } } && two.count == 2)
        #expect(Ops.plan([entry(".before-reset-3", major: nil)], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: [])
            == [.leave("/p/.amp/.before-reset-3", reason: "holds no cluster (no PG_VERSION)")])
        // Upgrades: the old cluster after the swap is kept as the rollback copy; the new one before it goes.
        #expect(Ops.plan([entry(".upgrade-18", major: 15)], clusterMajor: 18, rollbackDirectory: rollback, rollbackNames: [])
            == [.keepAsRollback(from: "/p/.amp/.upgrade-18", to: "/p/.amp/rollback/metadb-15")])
        #expect(Ops.plan([entry(".upgrade-18", major: 18)], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: []) == [.remove("/p/.amp/.upgrade-18")])
        #expect(Ops.plan([entry(".upgrade-18", major: nil)], clusterMajor: 15, rollbackDirectory: rollback, rollbackNames: []) == [.remove("/p/.amp/.upgrade-18")])
        let taken = Ops.plan([entry(".upgrade-18", major: 15)], clusterMajor: 18, rollbackDirectory: rollback, rollbackNames: ["metadb-15"])
        #expect(taken.count == 1 && { if case .leave = taken[0] { true } else { false } }())
    }

    @Test("an entry may be the lock holder's own only when its PID is in the name, or it is an upgrade's")
    func inProgress() {
        #expect(Ops.mayBeInProgress(entry(".restore-42"), lockHolder: 42))
        #expect(!Ops.mayBeInProgress(entry(".restore-42"), lockHolder: 4))
        #expect(!Ops.mayBeInProgress(entry(".restore-42"), lockHolder: nil))
        #expect(Ops.mayBeInProgress(entry(".removing-metadb-42-0"), lockHolder: 42))
        #expect(Ops.mayBeInProgress(entry(".upgrade-18"), lockHolder: 7))
    }
}
