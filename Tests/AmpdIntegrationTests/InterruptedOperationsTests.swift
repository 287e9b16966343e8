#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing

/// What a restore, reset or upgrade cut short by a crash leaves beside the cluster, at the
/// next start and at the next `ampctl upgrade` (each state made by the renames the operation
/// itself does; `make faults` kills ampd in the middle of real restores and resets).
@Suite("interrupted restores, resets and upgrades: finished or rolled back at the next start, the rest listed by du and gc (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct InterruptedOperationsTests {
    func ampctl(_ f: AmpdFixture, _ args: [String]) async -> ToolResult {
        await runIn(f.base, ampctlPath, args, environment: toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"]))
    }

    func scratch(_ f: AmpdFixture) -> [String] {
        listDirectory(f.ampDir).filter { InterruptedOperations.kind(of: $0) != nil }.sorted()
    }

    /// A fake cluster directory of major version `major`.
    func fakeCluster(_ path: String, major: Int) throws {
        try makeDirectories(path)
        writeFile(path + "/PG_VERSION", "\(major)\n")
    }

    @Test("a reset cut before its new cluster, a restore's copy, an upgrade swapped but not moved, two kept clusters: rolled back, removed, kept as the rollback copy, listed")
    func recoveredAtStart() async throws {
        let f = AmpdFixture()
        var run = try await f.ready()
        let url = try #require(run.url)
        _ = try LibPQ.rows(url, "CREATE TABLE marker AS SELECT 'old'::text AS v")
        await run.stop()

        // A reset killed after moving the cluster aside, before initdb: the cluster comes back.
        #expect(rename(f.metadb, f.ampDir + "/.before-reset-4242") == 0)
        try fakeCluster(f.ampDir + "/.restore-4242", major: 15)
        try makeDirectories(f.ampDir + "/.removing-metadb-4242-0/base")
        try makeDirectories(f.ampDir + "/.upgrade-source-15")
        run = try await f.ready()
        #expect(try LibPQ.query(url, "SELECT v FROM marker").first == "old", "the cluster from before the reset")
        #expect(scratch(f).isEmpty, "\(scratch(f))")
        #expect(run.text.contains("was rolled back"), "\(run.text)")
        await run.stop()

        // An upgrade killed after the swap, before the old cluster went to rollback/.
        try fakeCluster(f.ampDir + "/.upgrade-9", major: 9)
        run = try await f.ready()
        #expect(isDirectory(f.ampDir + "/rollback/metadb-9") && scratch(f).isEmpty, "\(scratch(f))")
        #expect(run.text.contains("the old one is kept in \(f.ampDir)/rollback/metadb-9"), "\(run.text)")

        // Two kept clusters: which one is current cannot be told; left, listed, removed by gc.
        try fakeCluster(f.ampDir + "/.before-restore-11", major: 15)
        try fakeCluster(f.ampDir + "/.before-reset-12", major: 15)
        await run.stop()
        run = try await f.ready()
        #expect(try LibPQ.query(url, "SELECT v FROM marker").first == "old", "the current cluster is served")
        #expect(scratch(f) == [".before-reset-12", ".before-restore-11"], "\(scratch(f))")
        #expect(run.text.contains("left for you"), "\(run.text)")
        let du = await ampctl(f, ["du"])
        #expect(du.ok && du.output.contains("LEFT BY INTERRUPTED OPERATIONS") && du.output.contains(".before-reset-12 (cluster kept by an interrupted reset)"), "\(du.output)")
        let json = await ampctl(f, ["du", "--json"])
        #expect(json.output.contains("\"leftovers\"") && json.output.contains(".before-restore-11") && json.output.contains("\"age_seconds\""), "\(json.output)")
        let dry = await ampctl(f, ["gc", "--dry-run"])
        #expect(dry.output.contains("leftover ") && dry.output.contains(".before-restore-11"), "\(dry.output)")
        let gc = await ampctl(f, ["gc", "--yes", "--older-than", "36500"])
        #expect(gc.ok && scratch(f).isEmpty, "\(gc.output) \(scratch(f))")
        #expect(isDirectory(f.ampDir + "/rollback/metadb-9"), "a young rollback copy stays")
        await run.stop()

        // The next `ampctl upgrade` recovers first too (its rollback copy, then --finish drops it).
        #expect(rename(f.ampDir + "/rollback/metadb-9", f.ampDir + "/.upgrade-9") == 0)
        let finish = await ampctl(f, ["upgrade", "--finish", "--yes"])
        #expect(finish.ok && finish.output.contains("the old one is kept in") && !isDirectory(f.ampDir + "/rollback/metadb-9") && scratch(f).isEmpty,
                "\(finish.output) \(scratch(f))")
    }
}
