#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import SystemSupport
import Testing

@Suite("settings: each declared once, everything else derived (pure)")
struct SettingDescriptorTests {
    /// A valid text value of each kind (as a variable or a flag gives it).
    func sample(_ kind: SettingKind) -> String {
        switch kind {
        case .text: "sv_SE.UTF-8"
        case .path: "/opt/pg/bin"
        case .url: "postgresql://app@db.example.com:5432/app"
        case .duration: "42s"
        case .period: "7d"
        case .boolean: "false"
        case .profile: "durable"
        case .memory: "3GB"
        case .cpus: "3"
        case .listen: "127.0.0.1:5499"
        case .arguments, .seedPaths: "--data-checksums"
        case .engine: "pgbackrest"
        case .options: "repo1-type=s3 repo1-s3-bucket=backups"
        case .poolMode: "session"
        case .count: "17"
        }
    }

    @Test("keys (per table), variables and flags are unique; variables are AMP_ and the table's name (AMP_PG_ for [postgres]), flags --")
    func unique() {
        let keys = Setting.all.map(\.qualifiedKey), variables = Setting.all.compactMap(\.variable), flags = Setting.all.compactMap(\.flag)
        #expect(Set(keys).count == keys.count && Set(variables).count == variables.count && Set(flags).count == flags.count)
        #expect(Setting.all.allSatisfy { s in s.variable.map { $0.hasPrefix(s.table == "postgres" ? "AMP_PG_" : "AMP_" + s.table.uppercased() + "_") } ?? true })
        #expect(flags.allSatisfy { $0.hasPrefix("--") } && Setting.all.allSatisfy { Setting.tables.contains($0.table) })
        #expect(Set(ConfigLoader.postgresKeys) == Set(Setting.all.filter { $0.table == "postgres" }.map(\.key) + ["parameters"]))
    }

    @Test("[backup] keys are read from their table; a bad window names the file, line and key")
    func backupTable() throws {
        let (layer, warnings) = try ConfigLoader.parseFile("[backup]\nwindow = \"7d\"\nsynchronous = true\ntarget = \"../elsewhere\"\n", path: "/p/.amp/config.toml", baseDirectory: "/p")
        #expect(warnings.isEmpty)
        #expect(layer.backupWindow == .seconds(7 * 86_400) && layer.backupSynchronous == true && layer.backupTarget == "/elsewhere")
        do {
            _ = try ConfigLoader.parseFile("[backup]\nwindow = \"2s\"\n", path: "/p/config.toml", baseDirectory: "/p")
            Issue.record("accepted a 2 s window")
        } catch {
            #expect(error.message.hasPrefix("/p/config.toml:2: backup.window must be a duration from 1min to 366d"))
        }
        let (engine, _) = try ConfigLoader.parseFile("[backup]\nengine = \"pgbackrest\"\nrepository = [\"repo1-type=s3\", \"repo1-s3-uri-style=path\"]\n", path: "/p/config.toml", baseDirectory: "/p")
        #expect(engine.backupEngine == .pgbackrest && engine.backupRepository == ["repo1-type=s3", "repo1-s3-uri-style=path"])
        for (bad, says) in [("engine = \"barman\"", "backup.engine must be amp or pgbackrest, not the string \"barman\""),
                            ("repository = [\"repo1 type=s3\"]", "backup.repository must contain only pgBackRest options as NAME=VALUE"),
                            ("repository = [\"Repo1-type=s3\"]", "backup.repository must contain only"),
                            ("repository = \"repo1-type=s3\"", "backup.repository must be an array of strings")] {
            do {
                _ = try ConfigLoader.parseFile("[backup]\n\(bad)\n", path: "/p/config.toml", baseDirectory: "/p")
                Issue.record("accepted \(bad)")
            } catch {
                #expect(error.message.hasPrefix("/p/config.toml:2: \(says)"), "\(error.message)")
            }
        }
        let (_, unknown) = try ConfigLoader.parseFile("[backup]\nretention = 3\n", path: "/p/config.toml", baseDirectory: "/p")
        #expect(unknown.first?.contains("unknown key 'backup.retention'") == true)
    }

    @Test("each setting parses, lands in its layer field, and AmpSettings.apply takes it")
    func roundTrip() throws {
        for setting in Setting.all {
            let text = setting.kind == .boolean ? (setting.defaultText == "true" ? "false" : "true") : sample(setting.kind)
            let value = try setting.parse(text: text, baseDirectory: "/base").get()
            var layer = SettingsLayer()
            #expect(!setting.isSet(in: layer))
            setting.store(value, in: &layer)
            #expect(setting.isSet(in: layer), "\(setting.key)")
            var settings = AmpSettings()
            let before = setting.display(settings)
            settings.apply(layer)
            #expect(setting.display(settings) != before, "\(setting.key): apply ignores it")
        }
    }

    @Test("the file, the environment and a flag give one message each, naming where and what the value must be")
    func messages() throws {
        #expect(throws: ConfigError.self) { try ConfigLoader.parseFile("[postgres]\nprofile = \"fast\"\n", path: "/p/config.toml", baseDirectory: "/p") }
        do {
            _ = try ConfigLoader.parseFile("[postgres]\nprofile = \"fast\"\n", path: "/p/config.toml", baseDirectory: "/p")
        } catch {
            #expect(error.message == "/p/config.toml:2: postgres.profile must be dev or durable, not the string \"fast\"; fix the value or remove the line")
        }
        do {
            _ = try ConfigLoader.environmentLayer(["AMP_PG_PROFILE": "fast"], workingDirectory: "/")
            Issue.record("accepted")
        } catch {
            #expect(error.message == "environment variable AMP_PG_PROFILE=fast is not dev or durable; fix it or unset it")
        }
        do {
            _ = try ConfigLoader.flagLayer([(.profile, "fast")], parameters: [], workingDirectory: "/")
            Issue.record("accepted")
        } catch {
            #expect(error.message == "--profile fast: not dev or durable")
        }
        // A URL is never echoed (it may hold a password).
        do {
            _ = try ConfigLoader.parseFile("[postgres]\nurl = \"postgresql://u:secret@h/db\"\n", path: "/p/config.toml", baseDirectory: "/p")
        } catch {
            #expect(!error.message.contains("secret") && error.message.contains("must not contain a password"), "\(error.message)")
        }
    }

    @Test("the settings table of amp.toml(5) is the one the declarations make (run `make man` after changing them)")
    func manPage() throws {
        let page = String(#filePath.split(separator: "/").dropLast(3).joined(separator: "/"))
        let text = try #require(FileContents.text("/" + page + "/man/man5/amp.toml.5", limit: 1 << 20))
        #expect(text.contains(Setting.manReference()), "man/man5/amp.toml.5 drifted from Setting.all: run `make man`")
        for setting in Setting.all {
            let shown = setting.table == "postgres" ? setting.key : setting.qualifiedKey
            #expect(text.contains(".B " + shown), "\(shown)")
        }
    }
}
