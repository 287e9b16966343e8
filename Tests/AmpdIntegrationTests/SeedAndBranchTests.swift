#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import SystemSupport
import Testing

@Suite("seed scripts and branch databases (built binaries, real PostgreSQL, real git)", .serialized, unprivileged)
struct SeedAndBranchTests {


    @Test("seeds run once, in order, when the cluster is created; not again on the next start")
    func seedsRunOnce() async throws {
        let f = AmpdFixture()
        try makeDirectories(f.base + "/db")
        try makeDirectories(f.ampDir)
        writeFile(f.ampDir + "/config.toml", "[postgres]\nseed = [\"db/schema.sql\", \"db/seed.sql\"]\n")
        writeFile(f.base + "/db/schema.sql", "CREATE TABLE fruit (name text NOT NULL);\n")
        writeFile(f.base + "/db/seed.sql", "INSERT INTO fruit VALUES ('apple'), ('pear');\n")
        let first = try await f.ready()
        let url = try #require(first.url)
        #expect(try LibPQ.query(url, "SELECT count(*) FROM fruit").first == "2")
        #expect(first.text.contains("seeded the new cluster with 2 script(s)"), "\(first.text)")
        await first.stop()
        let second = try await f.ready()
        #expect(try LibPQ.query(try #require(second.url), "SELECT count(*) FROM fruit").first == "2", "not seeded twice")
        await second.stop()
    }

    @Test("a failing seed names the file and line, is never reported ready, and leaves no half-seeded cluster")
    func failingSeed() async throws {
        let f = AmpdFixture()
        try makeDirectories(f.base + "/db")
        try makeDirectories(f.ampDir)
        writeFile(f.ampDir + "/config.toml", "[postgres]\nseed = [\"db/seed.sql\"]\n")
        writeFile(f.base + "/db/seed.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\nSELECT no_such_column FROM a;\n")
        let (status, lines) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(90))
        let text = lines.joined(separator: "\n")
        #expect(status == .exited(65), "\(text)")
        #expect(text.contains("seed.sql:3"), "names the file and line: \(text)")
        #expect(!text.contains("ready in "), "never ready: \(text)")
        #expect(access(f.metadb + "/PG_VERSION", F_OK) != 0, "no half-seeded cluster left")

        // Fixed, the next start seeds from scratch.
        writeFile(f.base + "/db/seed.sql", "CREATE TABLE a (x int);\nINSERT INTO a VALUES (1);\n")
        let run = try await f.ready()
        #expect(try LibPQ.query(try #require(run.url), "SELECT count(*) FROM a").first == "1")
        await run.stop()
    }

    @Test("a missing seed script or a seed that is not a list: a one-line error naming the config file")
    func badSeedSettings() async throws {
        let f = AmpdFixture()
        try makeDirectories(f.ampDir)
        writeFile(f.ampDir + "/config.toml", "[postgres]\nseed = \"db/seed.sql\"\n")
        let (notList, lines) = try await f.runToEnd(["run", "--amp-dir", f.base])
        #expect(notList == .exited(78), "\(lines)")
        #expect(lines.joined().contains("config.toml:2") && lines.joined().contains("seed"), "\(lines)")
        writeFile(f.ampDir + "/config.toml", "[postgres]\nseed = [\"db/missing.sql\"]\n")
        let (missing, more) = try await f.runToEnd(["run", "--amp-dir", f.base], timeout: .seconds(90))
        #expect(missing == .exited(65), "\(more)")
        #expect(more.joined().contains("db/missing.sql") && more.joined().contains("config.toml"), "\(more)")
    }

    @Test("--branch: the default branch uses the default database; another branch gets its own copy; list and prune")
    func branchDatabases() async throws {
        let f = AmpdFixture()
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1", "GIT_CONFIG_NOSYSTEM": "1", "HOME": f.base])
        func git(_ args: [String]) async -> ToolResult {
            await run("/usr/bin/git", ["-C", f.base, "-c", "user.email=t@example.org", "-c", "user.name=t", "-c", "init.defaultBranch=main"] + args, environment: env)
        }
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }
        #expect(await git(["init", "-q"]).ok)
        writeFile(f.base + "/README", "x\n")
        #expect(await git(["add", "README"]).ok)
        #expect(await git(["commit", "-qm", "first"]).ok)
        let ampd = try await f.ready()
        let local = try #require(ampd.url)
        _ = try LibPQ.rows(local, "CREATE TABLE shared (n int); INSERT INTO shared VALUES (42)")

        let onMain = await ampctl(["url", "--branch"])
        #expect(onMain.ok && onMain.output.trimmingWhitespace == local, "\(onMain.output)")

        #expect(await git(["checkout", "-qb", "feature/Login-2"]).ok)
        let featureDB = "br_feature_login_2_" + FNV1a.hex("feature/Login-2").prefix(8)
        let onFeature = await ampctl(["url", "--branch"])
        #expect(onFeature.ok, "\(onFeature.output)")
        let featureURL = onFeature.output.split(separator: "\n").last.map(String.init) ?? ""
        #expect(featureURL.contains("/\(featureDB)?"), "\(onFeature.output)")
        #expect(onFeature.output.contains("created database \(featureDB) for branch feature/Login-2"))
        #expect(try LibPQ.query(featureURL, "SELECT n FROM shared").first == "42", "a copy of the default database")
        let envOut = await ampctl(["env", "--branch"])
        #expect(envOut.output.contains("export PGDATABASE=\(featureDB)") || envOut.output.contains("export PGDATABASE='\(featureDB)'"), "\(envOut.output)")

        // A second branch that stays: prune must keep its database.
        #expect(await git(["checkout", "-qb", "keep_me"]).ok)
        #expect(await ampctl(["url", "--branch"]).ok)
        #expect(await git(["checkout", "-q", "feature/Login-2"]).ok)
        let list = await ampctl(["branch", "list"])
        #expect(list.ok && list.output.contains(featureDB) && list.output.contains("feature/Login-2"), "\(list.output)")
        #expect(await git(["checkout", "-q", "main"]).ok)
        #expect(await git(["branch", "-qD", "feature/Login-2"]).ok)
        let gone = await ampctl(["branch", "list"])
        #expect(gone.output.contains("gone from git"), "\(gone.output)")
        let prune = await ampctl(["branch", "prune", "--yes"])
        #expect(prune.ok, "\(prune.output)")
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname = '\(featureDB)'").first == "0")
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname = 'br_keep_me'").first == "1", "only branches gone from git")

        // feat/x, feat_x and Feat-X once shared br_feat_x, and prune dropped it under feat_x.
        var databaseOf: [String: String] = [:]
        for branch in ["feat/x", "feat_x", "Feat-X"] {
            #expect(await git(["checkout", "-q", "main"]).ok)
            #expect(await git(["checkout", "-qb", branch]).ok)
            let r = await ampctl(["url", "--branch"])
            #expect(r.ok, "\(r.output)")
            let url = r.output.split(separator: "\n").last.map(String.init) ?? ""
            databaseOf[branch] = try LibPQ.query(url, "SELECT current_database()").first ?? nil
            _ = try LibPQ.rows(url, "CREATE TABLE mine (branch text); INSERT INTO mine VALUES ('\(branch)')")
        }
        #expect(Set(databaseOf.values).count == 3, "one database per branch: \(databaseOf)")
        #expect(await git(["checkout", "-q", "feat_x"]).ok)
        #expect(await git(["branch", "-qD", "feat/x"]).ok)
        let pruned = await ampctl(["branch", "prune", "--yes"])
        #expect(pruned.ok, "\(pruned.output)")
        let again = await ampctl(["url", "--branch"])
        let mine = again.output.split(separator: "\n").last.map(String.init) ?? ""
        #expect(try LibPQ.query(mine, "SELECT branch FROM mine").first == "feat_x", "the current branch keeps its data: \(again.output)")
        #expect(try LibPQ.query(local, "SELECT count(*) FROM pg_database WHERE datname = '\(databaseOf["feat/x"] ?? "")'").first == "0", "feat/x's database pruned")

        // A database of the branch's name that records another branch is never handed out.
        let stolen = databaseOf["Feat-X"] ?? ""
        _ = try LibPQ.rows(local, "COMMENT ON DATABASE \(stolen) IS 'amp branch: someone-else'")
        #expect(await git(["checkout", "-q", "Feat-X"]).ok)
        let refused = await ampctl(["url", "--branch"])
        #expect(refused.status == .exited(65) && refused.output.contains("belongs to branch someone-else"), "\(refused.output)")
        await ampd.stop()
    }
}

extension SeedAndBranchTests {
    @Test("ampctl reset: asks first; --seed makes a new seeded cluster; plain reset an empty one; a failing seed brings the old cluster back")
    func reset() async throws {
        let f = AmpdFixture()
        try makeDirectories(f.base + "/db")
        try makeDirectories(f.ampDir)
        writeFile(f.ampDir + "/config.toml", "[postgres]\nseed = [\"db/seed.sql\"]\n")
        writeFile(f.base + "/db/seed.sql", "CREATE TABLE fruit (name text); INSERT INTO fruit VALUES ('apple');\n")
        let ampd = try await f.ready()
        let url = try #require(ampd.url)
        let env = toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "NO_COLOR": "1"])
        func ampctl(_ args: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, args, environment: env) }
        _ = try LibPQ.rows(url, "INSERT INTO fruit VALUES ('pear'); CREATE TABLE scratch (x int)")

        let unconfirmed = await ampctl(["reset", "--seed"])
        #expect(unconfirmed.status == .exited(64), "\(unconfirmed.output)")
        let seeded = await ampctl(["reset", "--seed", "--yes"])
        #expect(seeded.ok, "\(seeded.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM fruit").first == "1", "seeded afresh")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_class WHERE relname = 'scratch'").first == "0")
        #expect(await eventually(timeout: .seconds(10)) {
            (try? LibPQ.query(url, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'").first) == "1"
        }, "the baseline extension is created in the new cluster too")

        // A seed that fails: the previous cluster comes back and answers.
        writeFile(f.base + "/db/seed.sql", "SELECT no_such_column;\n")
        let failing = await ampctl(["reset", "--seed", "--yes"])
        #expect(!failing.ok && failing.output.contains("seed.sql:1"), "\(failing.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM fruit").first == "1", "the previous cluster is back")

        let empty = await ampctl(["reset", "--yes"])
        #expect(empty.ok, "\(empty.output)")
        #expect(try LibPQ.query(url, "SELECT count(*) FROM pg_class WHERE relname = 'fruit'").first == "0", "empty")
        #expect(!listDirectory(f.ampDir).contains { $0.hasPrefix(".before-reset") })
        await ampd.stop()
    }
}
