import AmpPostgres
import Testing

@Suite("upgrade plan (pure)")
struct UpgradePlanTests {
    let old = PostgresBinaries(directory: "/usr/lib/postgresql/15/bin")
    let new = PostgresBinaries(directory: "/usr/lib/postgresql/18/bin")

    func facts(cluster: Int = 15, old: PostgresBinaries? = PostgresBinaries(directory: "/usr/lib/postgresql/15/bin"), newMajor: Int = 18,
               checksums: Bool = false, size: UInt64 = 1 << 30, free: UInt64? = 10 << 30) -> UpgradePlan.Facts {
        UpgradePlan.Facts(clusterMajor: cluster, oldBinaries: old, newBinaries: new, newMajor: newMajor, checksums: checksums,
                          clusterBytes: size, freeBytes: free, locale: "C", encoding: "UTF8")
    }

    func error(_ f: UpgradePlan.Facts) -> UpgradeError? {
        if case .failure(let e) = UpgradePlan.decide(f) { return e }
        return nil
    }

    @Test func sameOrOlderIsRefused() {
        #expect(error(facts(newMajor: 15))?.code == .notNewer)
        #expect(error(facts(newMajor: 15))?.message.contains("already PostgreSQL 15") == true)
        #expect(error(facts(cluster: 18, newMajor: 16))?.code == .notNewer)
    }

    @Test func oldBinariesAreNeededAndNamed() {
        let e = error(facts(old: nil))
        #expect(e?.code == .binariesMissing)
        #expect(e?.message.contains("apt install postgresql-15") == true && e?.message.contains("--old-bin-dir") == true)
    }

    @Test func spaceForAFullCopyPlusMargin() {
        let size: UInt64 = 1 << 30
        #expect(error(facts(size: size, free: size))?.code == .noSpace, "the margin is needed too")
        #expect(error(facts(size: size, free: size + UpgradePlan.marginBytes)) == nil)
        #expect(error(facts(size: size, free: nil)) == nil, "unknown free space does not block (pg_upgrade reports a full disk)")
        #expect(error(facts(size: size, free: 100 << 20))?.message.contains("needs 1088 MB free, has 100 MB") == true)
    }

    @Test("where extents are shared (--clone), a full copy's space is not asked for (it was, and refused upgrades that fit)")
    func cloneNeedsNoFullCopy() {
        let size: UInt64 = 1 << 30
        var shared = facts(size: size, free: 400 << 20)
        shared.sharesExtents = true
        #expect(error(shared) == nil, "400 MB free is enough to clone 1 GB")
        let plan = try? UpgradePlan.decide(shared).get()
        #expect(plan?.neededBytes == UpgradePlan.cloneShareBytes(size) + UpgradePlan.marginBytes)
        shared.freeBytes = 100 << 20
        #expect(error(shared)?.message.contains("clones the cluster") == true)
        #expect(error(facts(size: size, free: 400 << 20))?.code == .noSpace, "a copy still needs the full size")
    }

    @Test("the checksum setting carries over; 18 needs --no-data-checksums said explicitly")
    func checksums() throws {
        let to18 = try UpgradePlan.decide(facts()).get()
        #expect(to18.initdbArguments == ["--locale=C", "--encoding=UTF8", "--no-data-checksums"])
        let to16 = try UpgradePlan.decide(facts(newMajor: 16)).get()
        #expect(to16.initdbArguments == ["--locale=C", "--encoding=UTF8"])
        let with = try UpgradePlan.decide(facts(checksums: true)).get()
        #expect(with.initdbArguments.last == "--data-checksums")
    }

    @Test func phasesAreNumberedInOrder() {
        #expect(UpgradePhase.checking.numbered == "[1/8] checking (pg_upgrade --check)")
        #expect(UpgradePhase.extensions.numbered.hasPrefix("[8/8]"))
    }
}
