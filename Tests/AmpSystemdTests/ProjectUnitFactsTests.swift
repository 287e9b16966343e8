#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpRegistry
import AmpSystemd
import SystemSupport
import Testing

@Suite("the unit follows the project's network settings")
struct ProjectUnitFactsTests {
    func project(_ config: String?, pgVersion: String?, credential: Bool = false) throws -> (RegistryEntry, [String: String], String) {
        var template = Array("/tmp/amp-facts.XXXXXX".utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { $0.baseAddress.flatMap { mkdtemp($0) } }
        let base = try #require(made.map { String(cString: $0) })
        try makeDirectories(base + "/.amp/metadb")
        if let config { try writeFileAtomically(base + "/.amp/config.toml", Array(config.utf8), mode: 0o644) }
        if let pgVersion { try writeFileAtomically(base + "/.amp/metadb/PG_VERSION", Array((pgVersion + "\n").utf8), mode: 0o600) }
        let env = ["XDG_CONFIG_HOME": base + "/config"]
        if credential { try AmpSecrets.write(base + "/config/amp/credentials/p.pgpass", "db:5432:*:app:pw\n") }
        return (RegistryEntry(name: "p", base: base), env, base)
    }

    @Test("Unix sockets only for a 15+ cluster without a listener (PostgreSQL's, the pool's, the metrics'), pgBackRest or url; IP kept otherwise; LoadCredential only when the file exists")
    func facts() throws {
        let cases: [(String?, String?, Bool, Bool, Bool)] = [
            // config, PG_VERSION, credential file, unix only, credential line
            (nil, "15", false, true, false),
            (nil, "14", false, false, false),
            (nil, nil, false, false, false),
            ("[postgres]\nlisten = \"auto\"\n", "16", false, false, false),
            ("[pool]\nenabled = true\n", "15", false, true, false),
            ("[pool]\nenabled = true\nlisten = \"auto\"\n", "15", false, false, false),
            ("[metrics]\nlisten = \"auto\"\n", "15", false, false, false),
            ("[backup]\nengine = \"pgbackrest\"\n", "15", false, false, false),
            ("[postgres]\nurl = \"postgresql://app@db:5432/app\"\n", nil, true, false, true),
            ("[postgres]\nurl = \"postgresql://app@db:5432/app\"\n", nil, false, false, false),
            ("[postgres\n", "15", false, false, false),
        ]
        for (config, version, credential, unixOnly, loadCredential) in cases {
            let (entry, env, base) = try project(config, pgVersion: version, credential: credential)
            defer { try? removeTree(base) }
            let facts = ProjectUnitFacts.read(entry, environment: env)
            #expect(facts.unixOnly == unixOnly, "\(String(describing: config)) \(String(describing: version))")
            #expect((facts.credential != nil) == loadCredential)
            let dropIn = UnitRenderer(templatePath: "/usr/lib/systemd/user/amp@.service", writer: "test", environment: env).render(entry)
            guard case .text(let text)? = dropIn.first?.content else { Issue.record("no drop-in"); continue }
            #expect(text.contains("RestrictAddressFamilies=AF_UNIX") == unixOnly, "\(text)")
            #expect(text.contains("LoadCredential=amp-pgpass:\(base)/config/amp/credentials/p.pgpass") == loadCredential, "\(text)")
        }
    }
}
