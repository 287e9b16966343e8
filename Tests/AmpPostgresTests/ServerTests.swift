#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import Testing

@Suite("PostgreSQL server (real)", .serialized, notRoot)
struct ServerTests {
    @Test("fresh start creates the cluster, SELECT 1 works; restart keeps rows without initdb")
    func freshAndRestart() async throws {
        let dir = TemporaryDirectory()
        let server = try await builder(dir).start()
        #expect(try query(server, "SELECT 1") == ["1"])
        #expect(server.handle.url.hasPrefix("postgresql:///postgres?host=%2Ftmp%2F"))
        #expect(readFile(dir.file("data/PG_VERSION"))?.split(separator: "\n").first.map(String.init) == server.version.major)
        _ = try query(server, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')")
        var before = stat()
        stat(dir.file("data/PG_VERSION"), &before)
        let status = await server.stop()
        #expect(status.isSuccess)
        #expect(readFile(dir.file("data/postmaster.pid")) == nil)

        let again = try await builder(dir).start()
        #expect(try query(again, "SELECT v FROM t") == ["kept"])
        var after = stat()
        stat(dir.file("data/PG_VERSION"), &after)
        #expect(before.st_ino == after.st_ino)
        #expect(before.st_mtim.tv_sec == after.st_mtim.tv_sec && before.st_mtim.tv_nsec == after.st_mtim.tv_nsec)
        await again.stop()
    }

    @Test("locale, encoding, parameters and initdb arguments are applied")
    func builderOptions() async throws {
        let dir = TemporaryDirectory()
        let server = try await builder(dir)
            .locale("C.UTF-8").encoding("UTF8")
            .configParameter("work_mem", "7MB")
            .configParameter("fsync", "on")
            .initdbArgument("--data-checksums")
            .start()
        #expect(try query(server, "SHOW work_mem") == ["7MB"])
        #expect(try query(server, "SHOW fsync") == ["on"])
        #expect(try query(server, "SHOW synchronous_commit") == ["off"])
        #expect(try query(server, "SHOW autovacuum") == ["off"])
        #expect(try query(server, "SHOW listen_addresses") == [""])
        #expect(try query(server, "SHOW data_checksums") == ["on"])
        #expect(try query(server, "SHOW server_encoding") == ["UTF8"])
        #expect(try query(server, "SELECT datcollate FROM pg_database WHERE datname = 'postgres'") == ["C.UTF-8"])
        await server.stop()
    }
}
