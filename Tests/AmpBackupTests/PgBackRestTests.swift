@testable import AmpBackup
import Testing

@Suite("the pgBackRest engine's configuration, info and restore arguments (pure)")
struct PgBackRestPlanningTests {
    let info = """
        [{"archive":[{"database":{"id":1,"repo-key":1},"id":"15-1","max":"000000030000000000000005","min":"000000010000000000000001"}],\
        "backup":[{"archive":{"start":"000000010000000000000002","stop":"000000010000000000000003"},"backrest":{"format":5,"version":"2.45"},\
        "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":23213658,"repository":{"delta":3062512,"size":3062512},"size":23213658},\
        "label":"20261205-010715F","lsn":{"start":"0/2000028","stop":"0/3000050"},"prior":null,"reference":null,\
        "timestamp":{"start":1796432835,"stop":1796432838},"type":"full"},\
        {"archive":{"start":"000000030000000000000004","stop":"000000030000000000000005"},"backrest":{"format":5,"version":"2.45"},\
        "database":{"id":1,"repo-key":1},"error":false,"info":{"delta":8458,"repository":{"delta":431,"size":3062514},"size":23213658},\
        "label":"20261205-010715F_20261205-010719I","lsn":{"start":"0/4000028","stop":"0/5000050"},"prior":"20261205-010715F",\
        "reference":["20261205-010715F"],"timestamp":{"start":1796432839,"stop":1796432840},"type":"incr"}],\
        "cipher":"none","db":[{"id":1,"repo-key":1,"system-id":7715620255964215574,"version":"15"}],"name":"proj",\
        "repo":[{"cipher":"none","key":1,"status":{"code":0,"message":"ok"}}],"status":{"code":0,"lock":{"backup":{"held":false}},"message":"ok"}}]
        """

    @Test("info --output=json: backups with labels, times, LSNs, timelines, kinds and the stored size; the WAL range; the status")
    func parseInfo() throws {
        let parsed = try PgBackRestInfo.parse(info, stanza: "proj").get()
        #expect(parsed.backups.map(\.id) == ["20261205-010715F", "20261205-010715F_20261205-010719I"])
        #expect(parsed.backups[1].timeline == 3 && parsed.backups[1].endLSN == LSN("0/5000050") && parsed.backups[1].finished == 1796432840)
        #expect(parsed.backups[0].postgresVersion == "15" && parsed.backups[0].sizeBytes == 3062512)
        #expect(parsed.backups[1].parent == "20261205-010715F" && parsed.backups[0].parent == nil)
        #expect(parsed.kinds["20261205-010715F_20261205-010719I"] == "incr" && parsed.walMax == "000000030000000000000005" && parsed.statusCode == 0)
        for bad in ["", "{}", "[{\"name\":\"other\"}]", String(info.dropLast(3))] {
            guard case .failure(let e) = PgBackRestInfo.parse(bad, stanza: "proj") else { Issue.record("accepted \(bad.prefix(40))"); continue }
            #expect(e.message.contains("pgbackrest info printed what amp cannot read"))
        }
        let empty = try PgBackRestInfo.parse("[{\"name\":\"proj\",\"backup\":[],\"status\":{\"code\":2,\"message\":\"no valid backups\"}}]", stanza: "proj").get()
        #expect(empty.backups.isEmpty && empty.statusCode == 2)
    }

    @Test("options: amp's defaults, then [backup] repository, then PGBACKREST_* variables; a repository named replaces the local one; stanza picked out")
    func options() {
        let local = PgBackRest.options(repository: [], environment: ["PATH": "/usr/bin"], workDirectory: "/p/.amp/pgbackrest",
                                       defaultRepository: "/p/.amp/backup/pgbackrest", window: 36 * 3600, defaultStanza: "proj")
        #expect(local.stanza == "proj")
        #expect(local.options.contains(.init(name: "repo1-path", value: "/p/.amp/backup/pgbackrest")))
        #expect(local.options.contains(.init(name: "repo1-retention-full", value: "2")) && local.options.contains(.init(name: "repo1-retention-full-type", value: "time")))
        #expect(local.options.contains(.init(name: "lock-path", value: "/p/.amp/pgbackrest/lock")))

        let s3 = PgBackRest.options(
            repository: ["repo1-type=s3", "repo1-s3-bucket=b", "compress-type=zst", "stanza=shared-name"],
            environment: ["PGBACKREST_REPO1_S3_KEY_SECRET": "s3cret", "PGBACKREST_CONFIG": "/etc/evil.conf", "PGBACKREST_COMPRESS_TYPE": "bz2"],
            workDirectory: "/w", defaultRepository: "/r", window: 3600, defaultStanza: "proj")
        #expect(s3.stanza == "shared-name")
        #expect(!s3.options.contains { $0.name == "repo1-path" || $0.name == "config" || $0.name == "stanza" })
        #expect(s3.options.contains(.init(name: "repo1-s3-key-secret", value: "s3cret")))
        #expect(s3.options.filter { $0.name == "compress-type" } == [.init(name: "compress-type", value: "bz2")], "the environment wins, once")
        #expect(s3.options.contains(.init(name: "repo1-retention-full", value: "1")))
    }

    @Test("the configuration file and archive_command; a path with a quote cannot go into archive_command")
    func configuration() {
        let engine = PgBackRest(executable: "/usr/bin/pgbackrest", workDirectory: "/p/.amp/pgbackrest", stanza: "proj", dataDirectory: "/p/.amp/metadb",
                                options: [.init(name: "repo1-path", value: "/r")], account: nil)
        #expect(engine.configuration(socketDirectory: nil, port: nil, user: nil).hasSuffix("[global]\nrepo1-path=/r\n\n[proj]\npg1-path=/p/.amp/metadb\n"))
        #expect(engine.configuration(socketDirectory: "/s", port: 5432, user: "me").hasSuffix("pg1-path=/p/.amp/metadb\npg1-socket-path=/s\npg1-port=5432\npg1-user=me\n"))
        #expect(engine.archiveCommand == "'/usr/bin/pgbackrest' --config='/p/.amp/pgbackrest/pgbackrest.conf' --stanza='proj' archive-push %p")
        #expect(engine.commandProblem == nil)
        let quoted = PgBackRest(executable: "/usr/bin/pgbackrest", workDirectory: "/it's/.amp/pgbackrest", stanza: "proj", dataDirectory: "/d", options: [], account: nil)
        #expect(quoted.commandProblem?.contains("quote") == true)
    }

    @Test("restore: the backup chosen for a time, a restore point and latest; the restore command's arguments")
    func restore() {
        func b(_ id: String, _ t: Double, _ end: UInt64) -> BaseBackup {
            BaseBackup(id: id, started: t - 1, finished: t, timeline: 1, startLSN: LSN(end - 10), endLSN: LSN(end), postgresVersion: "15", sizeBytes: 1)
        }
        let backups = [b("A", 100, 1000), b("B", 200, 2000)]
        #expect((try? PgBackRest.choose(backups, for: .time(150), point: nil).get())?.id == "A")
        #expect((try? PgBackRest.choose(backups, for: .latest, point: nil).get())?.id == "B")
        #expect((try? PgBackRest.choose(backups, for: .point("p"), point: RestorePoint(name: "p", time: 250, lsn: LSN(1500), timeline: 2)).get())?.id == "A")
        guard case .failure(let early) = PgBackRest.choose(backups, for: .time(50), point: nil) else { Issue.record("a time before every backup"); return }
        #expect(early.code == .notRestorable && early.message.contains("earliest restorable moment"))
        guard case .failure(let none) = PgBackRest.choose([], for: .latest, point: nil) else { Issue.record("no backups"); return }
        #expect(none.message.contains("`ampctl backup create`"))

        #expect(PgBackRest.restoreArguments(.latest, point: nil, backup: "B", into: "/x") == ["restore", "--pg1-path=/x", "--set=B", "--type=default"])
        #expect(PgBackRest.restoreArguments(.time(1796432838.25), point: nil, backup: "A", into: "/x")
            == ["restore", "--pg1-path=/x", "--set=A", "--type=time", "--target=2026-12-05 01:07:18.250000+00", "--target-action=promote"])
        #expect(PgBackRest.restoreArguments(.point("p"), point: RestorePoint(name: "p", time: 1, lsn: LSN(1), timeline: 2), backup: "A", into: "/x").suffix(3)
            == ["--target=p", "--target-action=promote", "--target-timeline=2"])
    }
}
