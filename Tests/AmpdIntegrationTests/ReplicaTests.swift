#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import Foundation
import Testing

/// `ampctl replica init`, `promote` and `replica rejoin` with two amp projects under `ampd
/// run` (amp@NAME: ``SystemdUnitTests``): a standby cloned over TCP with SCRAM follows the
/// primary's writes and reports its lag, both sides show it, it is promoted and takes writes,
/// and the former primary comes back as its standby (pg_rewind in the durable profile with the
/// socket outside the data directory, a fresh clone otherwise).
@Suite("streaming replica (built binaries, real PostgreSQL)", .serialized, unprivileged)
struct ReplicaTests {
    struct Node {
        let f: AmpdFixture
        let name: String
        var environment: [String: String] { toolEnvironment(["XDG_RUNTIME_DIR": f.runtimeDirectory, "XDG_CONFIG_HOME": f.base + "/config", "NO_COLOR": "1"]) }
        /// The socket directory, outside the data directory (pg_rewind reads the source's data
        /// directory through SQL and cannot read a socket in it).
        var sockets: String { f.base + "/sockets" }

        init(_ config: String) {
            f = AmpdFixture()
            name = String(f.base.split(separator: "/").last ?? "")
            mkdir(f.ampDir, 0o700)
            mkdir(f.base + "/config", 0o700)
            mkdir(f.base + "/sockets", 0o700)
            writeFile(f.ampDir + "/config.toml", config.replacingOccurrences(of: "SOCKETS", with: f.base + "/sockets"))
        }

        func ampctl(_ arguments: [String]) async -> ToolResult { await runIn(f.base, ampctlPath, arguments, environment: environment) }

        func start() async throws -> AmpdRun {
            let run = try await f.start(["run", "--amp-dir", f.base], environment: ["XDG_CONFIG_HOME": f.base + "/config"])
            try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
            return run
        }

        func status() async throws -> [String: Any] {
            let s = await ampctl(["status", "--json"])
            return try #require(try JSONSerialization.jsonObject(with: Data(s.output.utf8)) as? [String: Any], "\(s.output)")
        }
    }

    @Test("a standby cloned over TCP with SCRAM follows writes and reports its lag on both sides; promoted, it takes writes; the old primary rejoins with pg_rewind")
    func followPromoteRejoin() async throws {
        let port = freePort()
        let a = Node("[postgres]\nprofile = \"durable\"\nsocket_dir = \"SOCKETS\"\nlisten = \"127.0.0.1:\(port)\"\n[backup]\narchive = false\n")
        let b = Node("[postgres]\nprofile = \"durable\"\nsocket_dir = \"SOCKETS\"\n[backup]\narchive = false\n")
        let primary = try await a.start()
        let aURL = try #require(primary.url)
        _ = try LibPQ.rows(aURL, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")

        // Over TCP, with the primary's SCRAM password (ampctl url --tcp).
        let tcp = await a.ampctl(["url", "--tcp"])
        #expect(tcp.ok, "\(tcp.output)")
        let cloned = await b.ampctl(["replica", "init", "--from", tcp.output.trimmingCharacters(in: .whitespacesAndNewlines)])
        #expect(cloned.ok && cloned.output.contains("is a standby of host=127.0.0.1 port=\(port)"), "\(cloned.output)")
        #expect(!cloned.output.contains(tcp.output.split(separator: ":")[2].prefix(10)), "the password is not shown")
        #expect(access(b.f.metadb + "/standby.signal", F_OK) == 0)
        let standby = try await b.start()
        let bURL = try #require(standby.url)

        // It follows the primary's writes and is read-only.
        _ = try LibPQ.rows(aURL, "INSERT INTO t VALUES (2)")
        let followed = await eventually(timeout: .seconds(20)) { ((try? LibPQ.query(bURL, "SELECT count(*) FROM t").first) ?? nil) == "2" }
        #expect(followed)
        #expect(throws: LibPQError.self) { try LibPQ.rows(bURL, "INSERT INTO t VALUES (3)") }
        let reported = await eventuallyAsync(timeout: .seconds(10), every: .milliseconds(200)) {
            let s = try? await b.status()
            let r = s?["replication"] as? [String: Any]
            return s?["role"] as? String == "standby" && r?["receiver"] as? String == "streaming" && r?["lag_bytes"] != nil
                && r?["slot"] as? String == "amp_replica_" + b.name.lowercased().replacingOccurrences(of: ".", with: "_").replacingOccurrences(of: "-", with: "_")
        }
        let shown = try await b.status()
        #expect(reported, "\(shown)")
        let onPrimary = try await a.status()
        let standbys = (onPrimary["replication"] as? [String: Any])?["standbys"] as? [[String: Any]] ?? []
        #expect(onPrimary["role"] as? String == "primary" && standbys.first?["name"] as? String == b.name && standbys.first?["state"] as? String == "streaming", "\(onPrimary)")
        let human = await b.ampctl(["status"])
        #expect(human.output.contains("Role: standby of 127.0.0.1:\(port), streaming"), "\(human.output)")

        // Promoted, it takes writes; promoting again is refused with the reason.
        let promoted = await b.ampctl(["promote"])
        #expect(promoted.ok && promoted.output.contains("is a primary and takes writes"), "\(promoted.output)")
        _ = try LibPQ.rows(bURL, "INSERT INTO t VALUES (3)")
        let again = await b.ampctl(["promote"])
        #expect(again.status == .exited(65) && again.output.contains("is not a standby"), "\(again.output)")
        let after = try await b.status()
        #expect(after["role"] as? String == "primary")

        // The old primary diverges, stops, and rejoins: pg_rewind discards its own write.
        _ = try LibPQ.rows(aURL, "INSERT INTO t VALUES (99)")
        let running = await a.ampctl(["replica", "rejoin", "--from", "host=\(b.sockets) port=5432"])
        #expect(running.status == .exited(75) || running.output.contains("in use"), "refused while it runs: \(running.output)")
        await primary.stop()
        let rejoined = await a.ampctl(["replica", "rejoin", "--from", "host=\(b.sockets) port=5432"])
        #expect(rejoined.ok && rejoined.output.contains("again (pg_rewind)") && rejoined.output.contains("/.amp/rollback/metadb-before-rejoin-"), "\(rejoined.output)")
        let follower = try await a.start()
        let aAgain = try #require(follower.url)
        let caughtUp = await eventually(timeout: .seconds(20)) {
            ((try? LibPQ.query(aAgain, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t").first) ?? nil) == "1,2,3"
        }
        #expect(caughtUp, "\(String(describing: try? LibPQ.query(aAgain, "SELECT string_agg(n::text, ',' ORDER BY n) FROM t")))")
        let aStatus = try await a.status()
        #expect(aStatus["role"] as? String == "standby", "\(aStatus)")
        await follower.stop()
        await standby.stop()
    }

    @Test("the dev profile (no full_page_writes): rejoin clones afresh and says why; init refuses to replace a cluster without --replace and leaves it as it was")
    func cloneWhenRewindCannot() async throws {
        let a = Node("[backup]\narchive = false\n")
        let b = Node("[backup]\narchive = false\n")
        let primary = try await a.start()
        let aURL = try #require(primary.url)
        _ = try LibPQ.rows(aURL, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)")
        // b has a cluster of its own with a table: replaced only with --replace.
        let own = try await b.start()
        _ = try LibPQ.rows(try #require(own.url), "CREATE TABLE mine (n int)")
        await own.stop()
        let source = "host=\(a.f.metadb) port=5432"
        let refused = await b.ampctl(["replica", "init", "--from", source])
        #expect(refused.status == .exited(69) && refused.output.contains("add --replace"), "\(refused.output)")
        #expect(access(b.f.metadb + "/standby.signal", F_OK) != 0)
        let replaced = await b.ampctl(["replica", "init", "--from", source, "--replace"])
        #expect(replaced.ok && replaced.output.contains("its own cluster is kept in"), "\(replaced.output)")
        let standby = try await b.start()
        let bURL = try #require(standby.url)
        #expect(try LibPQ.query(bURL, "SELECT count(*) FROM t").first == "1")
        #expect(await b.ampctl(["promote"]).ok)
        await primary.stop()
        let rejoined = await a.ampctl(["replica", "rejoin", "--from", "host=\(b.f.metadb) port=5432"])
        #expect(rejoined.ok && rejoined.output.contains("cloned afresh") && rejoined.output.contains("full_page_writes"), "\(rejoined.output)")
        let follower = try await a.start()
        #expect(try LibPQ.query(try #require(follower.url), "SELECT pg_catalog.pg_is_in_recovery()").first == "t")
        await follower.stop()
        await standby.stop()
    }
}
