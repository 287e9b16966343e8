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

/// The options that shape the server, shared by `ampd run` and `ampd settings`: names and help
/// from each ``Setting``'s declaration, parsed by ArgumentParser as text and validated once,
/// by the setting, into a ``SettingsLayer`` (``settingsLayer(workingDirectory:)``).
struct ServerOptions: ParsableArguments {
    @Option(name: Setting.binDir.long, help: Setting.binDir.help) var binDir: String?
    @Option(name: Setting.locale.long, help: Setting.locale.help) var locale: String?
    @Option(name: Setting.encoding.long, help: Setting.encoding.help) var encoding: String?
    @Option(name: Setting.initdbArgs.long, parsing: .unconditionalSingleValue, help: Setting.initdbArgs.help) var initdbArgs: [String] = []
    @Option(name: [.customShort("c"), .customLong(String(Setting.parameterFlag.dropFirst(2)))],
            help: ArgumentHelp("Server parameter (repeatable), e.g. -c work_mem=16MB.", valueName: "NAME=VALUE"))
    var parameters: [String] = []
    @Option(name: Setting.postgresUser.long, help: Setting.postgresUser.help) var postgresUser: String?
    @Option(name: Setting.socketDir.long, help: Setting.socketDir.help) var socketDir: String?
    @Option(name: Setting.startTimeout.long, help: Setting.startTimeout.help) var startTimeout: String?
    @Option(name: Setting.stopTimeout.long, help: Setting.stopTimeout.help) var stopTimeout: String?
    @Option(name: Setting.profile.long, help: Setting.profile.help) var profile: String?
    @Option(name: Setting.memory.long, help: Setting.memory.help) var memory: String?
    @Option(name: Setting.cpus.long, help: Setting.cpus.help) var cpus: String?
    @Option(name: Setting.listen.long, help: Setting.listen.help) var listen: String?
    @Flag(name: Setting.templateCache.long, help: ArgumentHelp("Run initdb for a new cluster instead of copying the cached template."))
    var noTemplateCache = false

    /// The command-line layer of the settings.
    func settingsLayer(workingDirectory: String) throws(ConfigError) -> SettingsLayer {
        var given: [(Setting, String)] = []
        let single: [(Setting, String?)] = [
            (.binDir, binDir), (.locale, locale), (.encoding, encoding), (.postgresUser, postgresUser), (.socketDir, socketDir),
            (.startTimeout, startTimeout), (.stopTimeout, stopTimeout), (.profile, profile), (.memory, memory), (.cpus, cpus),
            (.listen, listen), (.templateCache, noTemplateCache ? "false" : nil),
        ]
        for case (let setting, let text?) in single { given.append((setting, text)) }
        for arg in initdbArgs { given.append((.initdbArgs, arg)) }
        var layer = try ConfigLoader.flagLayer(given, parameters: parameters, workingDirectory: workingDirectory)
        // One --initdb-arg is one argument, even with spaces in it.
        if !initdbArgs.isEmpty { layer.initdbArgs = initdbArgs }
        return layer
    }
}

extension Setting {
    /// The flag's name for ArgumentParser.
    var long: NameSpecification { .customLong(String((flag ?? "--" + key).dropFirst(2))) }
    /// The flag's help: the summary and the default.
    var help: ArgumentHelp {
        ArgumentHelp(summary + " (default: \(defaultText)).", valueName: kind.valueName)
    }
}

/// The entry point of the `ampd` executable.
public enum AmpdMain {
    public static func main() async {
        let command: any AsyncParsableCommand.Type = AmpdCommand.self
        await command.main()
    }
}
