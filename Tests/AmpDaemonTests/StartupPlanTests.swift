import AmpConfig
import AmpPostgres
import Testing
@testable import AmpDaemon

/// `StartupPlan`: where the amp dir and the name come from, and the local server's plan, as
/// pure functions of the inputs and the measured facts.
@Suite("startup plan (pure)")
struct StartupPlanTests {
    func inputs(ampDir: String? = nil, instance: String? = nil, environment: [String: String] = [:]) throws -> StartupPlan.Inputs {
        StartupPlan.Inputs(
            ampDirFlag: ampDir, instance: instance, commandLine: try ServerOptions.parse([]), environment: environment, workingDirectory: "/work/p")
    }

    @Test("the amp dir: flag > AMP_DIR > working directory; an instance needs one of the first two and a valid name")
    func locate() throws {
        #expect(try StartupPlan.locate(inputs()).ampDir.base == "/work/p")
        #expect(try StartupPlan.locate(inputs(environment: ["AMP_DIR": "/srv/x"])).ampDir.base == "/srv/x")
        #expect(try StartupPlan.locate(inputs(ampDir: "rel", environment: ["AMP_DIR": "/srv/x"])).ampDir.base == "/work/p/rel")
        #expect(try StartupPlan.locate(inputs(ampDir: "/srv/y", instance: "web")).projectName == "web")
        do {
            _ = try StartupPlan.locate(inputs(instance: "web"))
            Issue.record("an instance without an amp dir was accepted")
        } catch let error as DaemonError {
            #expect(error.code == .config && error.message.contains("ampctl init --name web"))
        }
        do {
            _ = try StartupPlan.locate(inputs(ampDir: "/srv/y", instance: "../x"))
            Issue.record("a bad instance name was accepted")
        } catch let error as DaemonError {
            #expect(error.code == .usage && error.message.hasPrefix("--instance ../x"))
        }
    }

    @Test("a local plan carries the decided settings and the planned listener's parameters with the layer that set listen")
    func decide() throws {
        let located = try StartupPlan.locate(inputs(ampDir: "/srv/y"))
        var settings = AmpSettings()
        let env = SettingsLayer(listen: .address(host: "127.0.0.1", port: 5499))
        settings.apply(env)
        let layers = ConfigurationLayers(file: nil, filePath: "/srv/y/.amp/config.toml", environment: env, commandLine: SettingsLayer(), settings: settings)
        let listener = TCPListener.planned(settings, ampDir: located.ampDir)
        let plan = try StartupPlan.decide(located: located, layers: layers, facts: ServerSettingsTests.facts, listener: listener, cacheDirectory: nil)
        guard case .local(let server) = plan.target else {
            Issue.record("not local")
            return
        }
        let listen = server.effective.first { $0.name == "listen_addresses" }
        #expect(listen?.value == "127.0.0.1" && listen?.source.description.contains("AMP_PG_LISTEN") == true, "\(String(describing: listen))")
        #expect(server.version.major == "15")
    }
}
