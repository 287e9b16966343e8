#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpLogging
import AmpPostgres
import AmpProtocol
import AmpSystemd
import AmpTuning
import ArgumentParser
import ChildProcess
import Logging
import ServiceLifecycle
import SystemSupport

/// `ampd`: the amp service.
@available(macOS 15, *)
public struct AmpdCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "ampd",
        abstract: "Runs a project's own PostgreSQL (the amp dir's metadb).",
        discussion: """
            EXIT STATUS
            \(ExitStatus.ampdCodes.map { "  \($0.rawValue)  \($0.ampdMeaning)" }.joined(separator: "\n"))
            """,
        version: ampVersion,
        subcommands: [RunCommand.self, SettingsCommand.self])

    public init() {}
}


/// `ampd run`: runs PostgreSQL for one amp dir in the foreground until SIGTERM/SIGINT.
public struct RunCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run the managed PostgreSQL of an amp dir in the foreground.",
        discussion: """
            The amp dir is BASE/.amp, where BASE is --amp-dir, else $AMP_DIR, else the current \
            directory. Settings come from built-in defaults, then BASE/.amp/config.toml, then \
            AMP_PG_* environment variables, then these options.
            """)

    @Option(name: .customLong("amp-dir"), help: ArgumentHelp("Project directory holding .amp (default: $AMP_DIR, else the current directory).", valueName: "BASE"))
    var ampDir: String?

    /// The settings options, shared with `ampd settings`.
    @OptionGroup var server: ServerOptions

    @Option(name: .customLong("instance"), help: ArgumentHelp("Run as the systemd unit amp@NAME: the project is called NAME, and the amp dir must come from --amp-dir or $AMP_DIR (the generator's drop-in), never from the current directory.", valueName: "NAME"))
    var instance: String?

    @Option(name: .customLong("log-target"), help: ArgumentHelp("auto, journal or stderr; auto uses the journal when standard error is connected to it ($JOURNAL_STREAM).", valueName: "TARGET"))
    var logTarget: String = "auto"

    @Option(name: .customLong("log-level"), help: ArgumentHelp("trace, debug, info, notice, warning, error or critical (default info).", valueName: "LEVEL"))
    var logLevel: String = "info"

    public init() {}

    public func run() async throws {
        let code = await Daemon.run(self)
        if code != .success { throw ExitCode(code.rawValue) }
    }
}

/// The options that shape the server, shared by `ampd run` and `ampd settings`: parsed by
/// ArgumentParser, validated once into a ``SettingsLayer`` by ``settingsLayer(workingDirectory:)``.
struct ServerOptions: ParsableArguments {
    @Option(name: .customLong("bin-dir"), help: ArgumentHelp("Directory of postgres and initdb.", valueName: "DIR"))
    var binDir: String?

    @Option(help: "initdb --locale for a new cluster (default C).")
    var locale: String?

    @Option(help: "initdb --encoding for a new cluster (default UTF8).")
    var encoding: String?

    @Option(name: .customLong("initdb-arg"), parsing: .unconditionalSingleValue, help: ArgumentHelp("Extra initdb argument (repeatable), e.g. --initdb-arg=--data-checksums.", valueName: "ARG"))
    var initdbArgs: [String] = []

    @Option(name: [.customShort("c"), .customLong("set")], help: ArgumentHelp("Server parameter (repeatable), e.g. -c work_mem=16MB.", valueName: "NAME=VALUE"))
    var parameters: [String] = []

    @Option(name: .customLong("postgres-user"), help: ArgumentHelp("Account PostgreSQL runs as when ampd runs as root.", valueName: "USER"))
    var postgresUser: String?

    @Option(name: .customLong("socket-dir"), help: ArgumentHelp("Unix socket directory (default: .amp/metadb when short enough).", valueName: "DIR"))
    var socketDir: String?

    @Option(name: .customLong("start-timeout"), help: ArgumentHelp("Bound on initdb and start-up (default 90s).", valueName: "DURATION"))
    var startTimeout: String?

    @Option(name: .customLong("stop-timeout"), help: ArgumentHelp("Bound on the fast shutdown (default 30s).", valueName: "DURATION"))
    var stopTimeout: String?

    @Option(help: ArgumentHelp("dev (default: non-durable, fast) or durable (fsync, checksums).", valueName: "PROFILE"))
    var profile: String?

    @Option(help: ArgumentHelp("Memory budget for sizing, e.g. 2GB (default: the cgroup limit, else a share of RAM).", valueName: "SIZE"))
    var memory: String?

    @Option(help: ArgumentHelp("CPU count for sizing (default: cgroup quota, affinity mask, online CPUs).", valueName: "N"))
    var cpus: Int?

    @Option(help: ArgumentHelp("Also listen on TCP with a SCRAM password: auto or HOST:PORT (default: off).", valueName: "ADDRESS"))
    var listen: String?

    @Flag(name: .customLong("no-template-cache"), help: "Run initdb for a new cluster instead of copying the cached template.")
    var noTemplateCache = false

    func profileValue() throws(ConfigError) -> Profile? {
        guard let profile else { return nil }
        guard let value = Profile(rawValue: profile) else {
            throw ConfigError(.invalidFlag, "--profile \(profile): unknown profile; use \(SettingBounds.profileText)", key: "--profile")
        }
        return value
    }

    func memoryValue() throws(ConfigError) -> MemorySize? {
        guard let memory else { return nil }
        guard let size = MemorySize(parsing: memory) else {
            throw ConfigError(.invalidFlag, "--memory \(memory): not a size \(MemorySize.rangeText)", key: "--memory")
        }
        return size
    }

    func cpusValue() throws(ConfigError) -> Int? {
        guard let cpus else { return nil }
        guard SettingBounds.cpus.contains(cpus) else {
            throw ConfigError(.invalidFlag, "--cpus \(cpus): use \(SettingBounds.cpusText)", key: "--cpus")
        }
        return cpus
    }

    /// The command-line layer of the settings.
    func settingsLayer(workingDirectory: String) throws(ConfigError) -> SettingsLayer {
        func duration(_ text: String?, _ flag: String) throws(ConfigError) -> Duration? {
            guard let text else { return nil }
            guard let d = parseTimeout(text) else {
                throw ConfigError(.invalidFlag, "\(flag) \(text): not a duration \(SettingBounds.timeoutText)", key: flag)
            }
            return d
        }
        func path(_ p: String?) -> String? { p.map { normalizePath($0.hasPrefix("/") ? $0 : workingDirectory + "/" + $0) } }
        var listenAddress: ListenAddress?
        if let listen {
            guard let address = ListenAddress(parsing: listen) else {
                throw ConfigError(.invalidFlag, "--listen \(listen): not \(ListenAddress.helpText)", key: "--listen")
            }
            listenAddress = address
        }
        var params: [AmpSettings.Parameter] = []
        for p in parameters { params.append(try ConfigLoader.parseParameterAssignment(p, flag: "--set")) }
        return SettingsLayer(
            binDir: path(binDir), locale: locale, encoding: encoding, initdbArgs: initdbArgs.isEmpty ? nil : initdbArgs,
            postgresUser: postgresUser, socketDir: path(socketDir),
            startTimeout: try duration(startTimeout, "--start-timeout"), stopTimeout: try duration(stopTimeout, "--stop-timeout"),
            templateCache: noTemplateCache ? false : nil, profile: try profileValue(), memory: try memoryValue(),
            cpus: try cpusValue(), listen: listenAddress, parameters: params)
    }
}

/// The entry point of the `ampd` executable.
public enum AmpdMain {
    public static func main() async {
        let command: any AsyncParsableCommand.Type = AmpdCommand.self
        await command.main()
    }
}
