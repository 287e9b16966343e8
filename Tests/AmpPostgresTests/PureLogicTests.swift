#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import ChildProcess
import Testing

@Suite("pure logic")
struct PureLogicTests {
    @Test("postgres --version output", arguments: [
        ("postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", "15", "15.18"),
        ("postgres (PostgreSQL) 18.1", "18", "18.1"),
        ("postgres (PostgreSQL) 18beta1", "18", "18beta1"),
        ("postgres (PostgreSQL) 9.6.24", "9.6", "9.6.24"),
    ])
    func versions(output: String, major: String, full: String) {
        let v = PostgresVersion.parse(versionOutput: output)
        #expect(v?.major == major)
        #expect(v?.full == full)
    }

    @Test("postmaster.pid")
    func pidFile() {
        let f = PostmasterPidFile.parse("4242\n/d/metadb\n1732280000\n5432\n/d/metadb\n\n  12345  6\nready   \n")
        #expect(f == PostmasterPidFile(pid: 4242, dataDirectory: "/d/metadb", port: 5432, socketDirectory: "/d/metadb", status: "ready"))
        #expect(f?.isReady == true)
        #expect(PostmasterPidFile.parse("garbage\n") == nil)
        #expect(PostmasterPidFile.parse("77\n")?.status == nil)
    }

    @Test("log entries: severity, PID, SQLSTATE, continuation lines stay with their entry")
    func logAssembly() {
        var a = PostgresLogAssembler()
        let entries = a.feed([
            "[100] 42P01 ERROR:  relation \"nope\" does not exist at character 15",
            "[100] 42P01 STATEMENT:  select * from nope",
            "\twhere true",
            "[101] 00000 LOG:  checkpoint starting: time",
            "[102] 00000 WARNING:  something",
            "[102] 00000 HINT:  do this",
            "plain initdb chatter",
        ])
        #expect(entries.count == 4)
        #expect(entries[0].severity == .error && entries[0].pid == 100 && entries[0].sqlState == "42P01")
        #expect(entries[0].message == "relation \"nope\" does not exist at character 15")
        #expect(entries[0].lines.count == 3)
        #expect(entries[0].text == "relation \"nope\" does not exist at character 15\nSTATEMENT:  select * from nope\n\twhere true")
        #expect(entries[1].severity == .log && entries[1].sqlState == nil)
        #expect(entries[2].severity == .warning && entries[2].lines.count == 2)
        #expect(entries[3].severity == nil && entries[3].message == "plain initdb chatter")
        // Another prefix (a user's log_line_prefix) still yields the severity.
        #expect(a.feed(["2026-11-22 10:00:00.000 UTC [7] FATAL:  terminating"]).first?.severity == .fatal)
    }

    @Test("severity → syslog priority, as PostgreSQL maps it")
    func priorities() {
        let map = Dictionary(uniqueKeysWithValues: PostgresSeverity.allCases.map { ($0.rawValue, $0.syslogPriority) })
        #expect(map["DEBUG1"] == 7 && map["LOG"] == 6 && map["INFO"] == 6 && map["NOTICE"] == 5 && map["WARNING"] == 5)
        #expect(map["ERROR"] == 4 && map["FATAL"] == 3 && map["PANIC"] == 2)
        #expect(PostgresSeverity.error.loggerLevel == .warning && PostgresSeverity.fatal.loggerLevel == .error)
    }

    @Test("socket directory: the data directory when short, else a stable private fallback")
    func socketDirectory() {
        let short = SocketDirectory.choose(preferred: "/home/u/p/.amp/metadb", port: 5432, runtimeDirectory: "/run/user/1000", uid: 1000, key: "k")
        #expect(short.directory == "/home/u/p/.amp/metadb" && short.reason == nil)
        let deep = "/home/u/" + String(repeating: "d", count: 90) + "/.amp/metadb"
        let a = SocketDirectory.choose(preferred: deep, port: 5432, runtimeDirectory: "/run/user/1000", uid: 1000, key: deep)
        let b = SocketDirectory.choose(preferred: deep, port: 5432, runtimeDirectory: "/run/user/1000", uid: 1000, key: deep)
        #expect(a.directory.hasPrefix("/run/user/1000/amp/pg-") && a.reason != nil)
        #expect(a == b)
        let noRuntime = SocketDirectory.choose(preferred: deep, port: 5432, runtimeDirectory: nil, uid: 1000, key: deep)
        #expect(noRuntime.directory.hasPrefix("/tmp/amp-1000/pg-"))
        // Exactly at the limit still fits: 107 bytes including "/.s.PGSQL.5432".
        let exact = "/" + String(repeating: "x", count: 107 - 1 - "/.s.PGSQL.5432".count)
        #expect(SocketDirectory.choose(preferred: exact, port: 5432, runtimeDirectory: nil, uid: 0, key: "").reason == nil)
        #expect(SocketDirectory.choose(preferred: exact + "y", port: 5432, runtimeDirectory: nil, uid: 0, key: "").reason != nil)
    }

    @Test("URL percent-encodes the socket directory")
    func url() {
        #expect(PostgresHandle.url(socketDirectory: "/a b/.amp/metadb", port: 5432, database: "postgres", user: nil)
            == "postgresql:///postgres?host=%2Fa%20b%2F.amp%2Fmetadb")
        #expect(PostgresHandle.url(socketDirectory: "/s", port: 5433, database: "db", user: "postgres")
            == "postgresql:///db?host=%2Fs&port=5433&user=postgres")
    }

    @Test("binary discovery: explicit only, then PATH, then distribution layouts newest first")
    func discovery() throws {
        let root = TemporaryDirectory()
        func makeBin(_ dir: String, _ tools: [String] = ["postgres", "initdb"]) {
            mkdirs(root.path + dir)
            for t in tools {
                let p = root.path + dir + "/" + t
                writeFile(p, "#!/bin/sh\n")
                chmod(p, 0o755)
            }
        }
        makeBin("/usr/lib/postgresql/9.6/bin")
        makeBin("/usr/lib/postgresql/16/bin")
        makeBin("/usr/lib/postgresql/13/bin")
        makeBin("/usr/pgsql-17/bin")
        makeBin("/opt/only-initdb", ["initdb"])
        makeBin("/opt/pg")
        let layouts = PostgresBinaries.distributionDirectories(fileSystemRoot: root.path)
        #expect(layouts.prefix(4).map { String($0.dropFirst(root.path.count)) } == [
            "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/13/bin", "/usr/lib/postgresql/9.6/bin", "/usr/pgsql-17/bin",
        ])
        let viaPath = try PostgresBinaries.locate(explicit: nil, searchPath: root.path + "/opt/only-initdb:" + root.path + "/opt/pg", distributionDirectories: layouts)
        #expect(viaPath.directory == root.path + "/opt/pg")
        let viaLayout = try PostgresBinaries.locate(explicit: nil, searchPath: "/nonexistent", distributionDirectories: layouts)
        #expect(viaLayout.directory == root.path + "/usr/lib/postgresql/16/bin")
        do {
            _ = try PostgresBinaries.locate(explicit: root.path + "/opt/only-initdb", searchPath: nil, distributionDirectories: layouts)
            Issue.record("explicit directory without postgres accepted")
        } catch {
            #expect(error.code == .binariesNotFound)
            #expect(error.message.contains("has no executable postgres"))
        }
        do {
            _ = try PostgresBinaries.locate(explicit: nil, searchPath: "/nonexistent", distributionDirectories: [])
            Issue.record("nothing found but no error")
        } catch {
            #expect(error.code == .binariesNotFound)
            #expect(error.message.contains("apt install postgresql"))
            #expect(error.details.first?.contains("/nonexistent") == true)
        }
    }

    @Test("process identity: gone, unrelated, never a postmaster by PID alone")
    func identity() async throws {
        let dir = TemporaryDirectory()
        let sleeper = try await ChildProcess.spawn(SpawnConfiguration(executable: "/bin/sleep", arguments: ["30"], environment: [:], workingDirectory: dir.path))
        #expect(ProcessInspector.identify(pid: sleeper.pid, dataDirectory: dir.path) != .gone)
        if case .postmaster = ProcessInspector.identify(pid: sleeper.pid, dataDirectory: dir.path) {
            Issue.record("sleep taken for a postmaster")
        }
        sleeper.signal(SIGKILL)
        #expect(await sleeper.wait() == .signaled(SIGKILL))
        #expect(ProcessInspector.identify(pid: sleeper.pid, dataDirectory: dir.path) == .gone)
    }

    @Test("line splitting keeps partial lines until their newline")
    func lines() {
        var s = LineSplitter(maximumLineLength: 8)
        #expect(s.feed(Array("ab\ncd".utf8)) == ["ab"])
        #expect(s.feed(Array("e\r\n0123456789\n".utf8)) == ["cde", "01234567"])
        #expect(s.feed(Array("tail".utf8)) == [])
        #expect(s.finish() == "tail")
    }
}

func mkdirs(_ path: String) {
    var current = ""
    for part in path.split(separator: "/") {
        current += "/" + part
        mkdir(current, 0o755)
    }
}

@Suite("template cache key")
struct TemplateKeyTests {
    @Test("the key changes with settings and with the binaries")
    func keyChanges() throws {
        let dir = TemporaryDirectory()
        for tool in ["postgres", "initdb"] { writeFile(dir.path + "/" + tool, "#!/bin/sh\n") }
        let binaries = PostgresBinaries(directory: dir.path)
        let version = PostgresVersion(major: "15", full: "15.20")
        let k = ClusterTemplateCache.key(binaries: binaries, version: version, locale: "C", encoding: "UTF8", arguments: [])
        #expect(k.hasPrefix("pg15-"))
        #expect(k == ClusterTemplateCache.key(binaries: binaries, version: version, locale: "C", encoding: "UTF8", arguments: []))
        #expect(k != ClusterTemplateCache.key(binaries: binaries, version: version, locale: "C.UTF-8", encoding: "UTF8", arguments: []))
        #expect(k != ClusterTemplateCache.key(binaries: binaries, version: version, locale: "C", encoding: "UTF8", arguments: ["--data-checksums"]))
        #expect(k != ClusterTemplateCache.key(binaries: binaries, version: PostgresVersion(major: "15", full: "15.21"), locale: "C", encoding: "UTF8", arguments: []))
        // An upgraded postgres binary (other size and mtime) gives another template.
        writeFile(dir.path + "/postgres", "#!/bin/sh\n# upgraded\n")
        #expect(k != ClusterTemplateCache.key(binaries: binaries, version: version, locale: "C", encoding: "UTF8", arguments: []))
    }
}

@Suite("clone strategy (pure)")
struct CloneStrategyTests {
    @Test func bySizeFrom15() {
        #expect(CloneStrategy.choose(sizeBytes: 8 << 20, serverMajor: 15) == .walLog)
        #expect(CloneStrategy.choose(sizeBytes: CloneStrategy.fileCopyFromBytes, serverMajor: 16) == .fileCopy)
        #expect(CloneStrategy.choose(sizeBytes: 1 << 40, serverMajor: 14) == nil, "no STRATEGY before 15")
    }
}

@Suite("pgaudit's log entries (pure)")
struct AuditRecordTests {
    @Test("an AUDIT entry gives its type, class and command; a statement with commas does not confuse it; other messages are not audit records")
    func parse() {
        let ddl = AuditRecord(message: "AUDIT: SESSION,1,1,DDL,CREATE TABLE,TABLE,public.t,\"CREATE TABLE t (a int, b int)\",<not logged>")
        #expect(ddl == AuditRecord(message: "AUDIT: SESSION,1,1,DDL,CREATE TABLE,,,x,<none>"))
        #expect(ddl?.type == "SESSION" && ddl?.auditClass == "DDL" && ddl?.command == "CREATE TABLE")
        #expect(AuditRecord(message: "AUDIT: OBJECT,2,1,MISC_SET,SET,,,SET x = 1,<not logged>")?.auditClass == "MISC_SET")
        for other in ["", "AUDIT:", "AUDIT: SESSION,1,1", "AUDIT: NOPE,1,1,DDL,CREATE TABLE", "AUDIT: SESSION,1,1,ddl,CREATE TABLE",
                      "checkpoint starting: time", "AUDIT SESSION,1,1,DDL,CREATE TABLE,,,x"] {
            #expect(AuditRecord(message: other) == nil, "\(other)")
        }
    }
}
