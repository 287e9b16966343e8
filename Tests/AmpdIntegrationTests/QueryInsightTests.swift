#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Testing
import Varlink

@Suite("ampctl top (built binaries, real PostgreSQL with pg_stat_statements)", .serialized, unprivileged)
struct QueryInsightTests {
    @Test("top lists the statements by total time, filters by database, and --reset starts again")
    func top() async throws {
        let f = AmpdFixture()
        let ampd = try await f.start(["run", "--amp-dir", f.base])
        try #require(await ampd.waitForLine("ready in ", timeout: .seconds(90)), "\(ampd.text)")
        let local = try #require(ampd.url)
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }
        #expect(await eventually(timeout: .seconds(10)) {
            (try? LibPQ.query(local, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first) == "1"
        })
        #expect(await ampctl(["createdb", "app"]).ok)
        let app = local.replacing("postgresql:///postgres?", with: "postgresql:///app?")
        _ = try LibPQ.rows(app, "CREATE TABLE t (n int)")
        let connection = try LibPQConnection(app)
        for i in 0..<25 { _ = try connection.rows("INSERT INTO t VALUES (\(i))") }

        let top = await ampctl(["top", "--db", "app", "--json"])
        #expect(top.ok, "\(top.output)")
        let rows = try JSONParser.parse(top.output).arrayValue ?? []
        let insert = rows.first { $0.objectValue?["query"]?.stringValue?.hasPrefix("INSERT INTO t") == true }?.objectValue
        #expect(insert?["calls"]?.intValue == 25, "\(top.output)")
        #expect(rows.allSatisfy { $0.objectValue?["database"] == .string("app") })
        let human = await ampctl(["top", "--db", "app", "-n", "5"])
        #expect(human.ok && human.output.contains("INSERT INTO t VALUES ($1)"), "\(human.output)")
        #expect(await ampctl(["top", "--reset"]).ok)
        let after = try JSONParser.parse(await ampctl(["top", "--db", "app", "--json"]).output).arrayValue ?? []
        #expect(!after.contains { $0.objectValue?["query"]?.stringValue?.hasPrefix("INSERT INTO t") == true }, "reset")
        let bad = await ampctl(["top", "--limit", "0"])
        #expect(bad.status == .exited(64), "\(bad.output)")
    }
}
