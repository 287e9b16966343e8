#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpRegistry
import AmpPostgres
import AmpTuning
import ArgumentParser
import Varlink
import SystemSupport

/// `ampd settings`: the effective server settings of an amp dir and the source of each,
/// without starting anything.
public struct SettingsCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "settings",
        abstract: "Print the effective PostgreSQL settings of an amp dir and where each comes from.",
        discussion: """
            The first lines (# KEY = VALUE SOURCE) are amp's own settings ([postgres] in config.toml, \
            AMP_PG_* or a flag); then each PostgreSQL parameter. \
            Sources, lowest precedence first: default (amp's fixed settings), profile, sizing (with \
            the memory budget, the CPU count and where they came from), PostgreSQL N (version-aware \
            settings), baseline extensions, config.toml, environment, command line; with listen set, \
            the TCP listener's parameters. Nothing is started and the amp dir is not touched.
            """)

    @Option(name: .customLong("amp-dir"), help: ArgumentHelp("Project directory holding .amp (default: $AMP_DIR, else the current directory).", valueName: "BASE"))
    var ampDir: String?
    /// The same settings options as `ampd run`.
    @OptionGroup var server: ServerOptions
    @Flag(name: .customLong("json"), help: "Print a JSON array of {name, value, source, kind}.")
    var json = false
    /// For `make man`: the settings table of amp.toml(5).
    @Flag(name: .customLong("man-reference"), help: .hidden) var manReference = false

    public init() {}

    public func run() async throws {
        if manReference {
            writeAll(1, Array(Setting.manReference().utf8))
            return
        }
        let inputs = StartupPlan.Inputs(
            ampDirFlag: ampDir, instance: nil, commandLine: self.server, environment: processEnvironment(), workingDirectory: workingDirectory())
        let plan: StartupPlan
        do throws(DaemonError) {
            plan = try await StartupPlan.make(inputs, located: try StartupPlan.locate(inputs)) { printError("ampd: \($0)") }
        } catch {
            printError("ampd: \(error.message)")
            for d in error.details { printError("  \(d)") }
            throw ExitCode(error.code.rawValue)
        }
        do {
            if !json {
                // amp's own settings, each with the layer that set it.
                for setting in Setting.all {
                    guard let value = setting.display(plan.settings), !value.isEmpty else { continue }
                    let shown = setting == .externalURL ? "(set)" : value
                    printLine("# \(setting.table == "postgres" ? setting.key : setting.qualifiedKey) = \(shown)  \(plan.layers.source(of: setting) ?? "default")")
                }
            }
            guard case .local(let server) = plan.target else {
                printLine("# external server: ampd runs no PostgreSQL for this project ([postgres] url in \(plan.ampDir.configFile))")
                return
            }
            for note in server.notes { printError("ampd: \(note)") }
            if json {
                let items = server.effective.map { s in
                    "{\"name\":\(jsonString(s.name)),\"value\":\(jsonString(s.value)),\"source\":\(jsonString(s.source.description)),\"kind\":\(jsonString(s.source.kind))}"
                }
                printLine("[\n  " + items.joined(separator: ",\n  ") + "\n]")
            } else {
                let width = server.effective.map(\.name.count).max() ?? 4
                let vwidth = min(40, server.effective.map(\.value.count).max() ?? 5)
                printLine("# PostgreSQL \(server.version) in \(server.binaries.directory); initdb arguments for a new cluster: \(server.initdbArguments.joined(separator: " "))")
                for s in server.effective {
                    let value = s.value.isEmpty ? "''" : s.value
                    printLine(s.name.padding(width) + "  " + value.padding(vwidth) + "  " + s.source.description)
                }
            }
        }
    }
}


/// `s` as a JSON string literal.
func jsonString(_ s: String) -> String { JSONValue.string(s).serialized }

extension String {
    func padding(_ n: Int) -> String { count >= n ? self : self + String(repeating: " ", count: n - count) }
}
