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
        #expect(try query(server, "SHOW synchronous_commit") == ["on"])
        #expect(try query(server, "SHOW autovacuum") == ["off"])
        #expect(try query(server, "SHOW listen_addresses") == [""])
        #expect(try query(server, "SHOW data_checksums") == ["on"])
        #expect(try query(server, "SHOW server_encoding") == ["UTF8"])
        #expect(try query(server, "SELECT datcollate FROM pg_database WHERE datname = 'postgres'") == ["C.UTF-8"])
        await server.stop()
    }
}

@Suite("PostgreSQL server failures and recovery (real)", .serialized, notRoot)
struct ServerRecoveryTests {
    @Test("stale postmaster.pid naming a live unrelated process: it survives, start succeeds")
    func stalePidUnrelated() async throws {
        let dir = TemporaryDirectory()
        let first = try await builder(dir).start()
        await first.stop()
        let sleeper = try await ChildProcess.spawn(SpawnConfiguration(executable: "/bin/sleep", arguments: ["60"], environment: [:]))
        writeFile(dir.file("data/postmaster.pid"), "\(sleeper.pid)\n\(dir.file("data"))\n1\n5432\n\(dir.file("data"))\n\n0 0\nready\n")
        let server = try await builder(dir).start()
        #expect(try query(server, "SELECT 1") == ["1"])
        #expect(sleeper.exitStatus == nil)
        #expect(kill(sleeper.pid, 0) == 0)
        await server.stop()
        sleeper.signal(SIGKILL)
        _ = await sleeper.wait()
    }

    @Test("a cluster of another major version is refused and left untouched")
    func versionMismatch() async throws {
        let dir = TemporaryDirectory()
        let first = try await builder(dir).start()
        await first.stop()
        writeFile(dir.file("data/PG_VERSION"), "11\n")
        let before = snapshot(dir.file("data"))
        do {
            _ = try await builder(dir).start()
            Issue.record("started a version-11 cluster")
        } catch {
            #expect(error.code == .versionMismatch)
            #expect(error.message.contains("PostgreSQL 11") && error.message.contains(first.version.major))
        }
        #expect(snapshot(dir.file("data")) == before)
        #expect(readFile(dir.file("data/PG_VERSION")) == "11\n")
    }

    @Test("a non-empty directory that is no cluster is refused and left untouched")
    func notACluster() async throws {
        let dir = TemporaryDirectory()
        mkdirs(dir.file("data"))
        writeFile(dir.file("data/precious.txt"), "keep me")
        do {
            _ = try await builder(dir).start()
            Issue.record("initdb ran over a non-empty directory")
        } catch {
            #expect(error.code == .notACluster)
        }
        #expect(readFile(dir.file("data/precious.txt")) == "keep me")
        #expect(readFile(dir.file("data/PG_VERSION")) == nil)
    }

    @Test("the remains of an interrupted initdb are removed, never used")
    func interruptedInitdb() async throws {
        let dir = TemporaryDirectory()
        mkdirs(dir.file(".data.initdb-99999/base"))
        writeFile(dir.file(".data.initdb-99999/PG_VERSION"), "15\n")
        let server = try await builder(dir).start()
        #expect(readFile(dir.file(".data.initdb-99999/PG_VERSION")) == nil)
        #expect(try query(server, "SELECT 1") == ["1"])
        await server.stop()
    }

    @Test("missing binaries: a clear error naming the directory")
    func missingBinaries() async throws {
        let dir = TemporaryDirectory()
        do {
            _ = try await builder(dir).binaryDirectory(dir.path).start()
            Issue.record("started without binaries")
        } catch {
            #expect(error.code == .binariesNotFound)
            #expect(error.message.contains(dir.path))
        }
        #expect(readFile(dir.file("data/PG_VERSION")) == nil)
    }

    @Test("a data directory too deep for a socket path still works")
    func deepPath() async throws {
        let dir = TemporaryDirectory()
        let deep = dir.path + "/" + String(repeating: "deep/", count: 22) + "data"
        let server = try await PostgresBuilder(dataDirectory: deep).runtimeDirectory(dir.path + "/run").start()
        #expect(server.handle.socketDirectory.hasPrefix(dir.path + "/run/amp/pg-"))
        #expect(try query(server, "SELECT 1") == ["1"])
        #expect(try LibPQ.query(server.handle.url, "SELECT 2") == ["2"])
        await server.stop()
    }

    @Test("postmaster killed with SIGKILL: run() throws exitedUnexpectedly with the status")
    func postmasterKilled() async throws {
        let dir = TemporaryDirectory()
        let server = try await builder(dir).start()
        kill(server.handle.pid, SIGKILL)
        do {
            try await server.run()
            Issue.record("run() returned normally")
        } catch let error as PostgresError {
            #expect(error.code == .exitedUnexpectedly)
            #expect(error.message.contains("signal 9"))
        }
        // The next start recovers (crash recovery) and works.
        let again = try await builder(dir).start()
        #expect(try query(again, "SELECT 1") == ["1"])
        await again.stop()
    }

    @Test("cancelling start-up stops the server again")
    func cancelledStart() async throws {
        let dir = TemporaryDirectory()
        let task = Task { try await builder(dir).start() }
        try await Task.sleep(for: .milliseconds(150))
        task.cancel()
        let result = await task.result
        if case .success(let server) = result {
            // Start finished before the cancellation arrived: fine, but stop it.
            await server.stop()
        } else if case .failure(let error as PostgresError) = result {
            #expect(error.underlying is CancellationError || error.code == .startFailed, "\(error.code): \(error.message); underlying \(String(describing: error.underlying))")
        }
        #expect(readFile(dir.file("data/postmaster.pid")) == nil)
    }
}

/// Names, sizes and modification times of every file below `path`.
func snapshot(_ path: String) -> [String: String] {
    var out: [String: String] = [:]
    func walk(_ p: String) {
        guard let d = opendir(p) else { return }
        defer { closedir(d) }
        while let e = readdir(d) {
            let name = withUnsafePointer(to: e.pointee.d_name) { $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) } }
            if name == "." || name == ".." { continue }
            let full = p + "/" + name
            var st = stat()
            guard lstat(full, &st) == 0 else { continue }
            out[full] = "\(st.st_size) \(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) \(st.st_mode)"
            if (st.st_mode & S_IFMT) == S_IFDIR { walk(full) }
        }
    }
    walk(path)
    return out
}
