#if canImport(Glibc)
import Glibc
#endif
import AmpBackup
import AmpConfig
import AmpPostgres
import AmpRegistry
import SystemSupport

/// What `ampd run` will do, worked out before anything in the amp dir is touched: the amp dir
/// and the project's name, the configuration layers, and either the external server or the
/// local server's settings (binaries, version, every parameter with its source, initdb
/// arguments, extensions, the template cache, the TCP listener as planned). `ampd settings`
/// prints the same plan, so what it shows is what a start does.
///
/// ``locate(_:)`` and ``decide(located:layers:facts:listener:)`` are pure (tested without
/// I/O); ``make(_:located:warn:)`` reads the configuration and measures the facts between them.
struct StartupPlan {
    /// What the command line and the process give.
    struct Inputs {
        var ampDirFlag: String?
        var instance: String?
        var commandLine: ServerOptions
        var environment: [String: String]
        var workingDirectory: String
    }

    /// The amp dir and the project's name.
    struct Located: Equatable {
        var ampDir: AmpDirectory
        var projectName: String
    }

    /// What runs: an external server's health, or a local cluster.
    enum Target {
        case external(url: String)
        case local(ServerSettings)
    }

    var located: Located
    var layers: ConfigurationLayers
    var target: Target
    /// The template cache's directory (nil: not used).
    var cacheDirectory: String?

    var ampDir: AmpDirectory { located.ampDir }
    var projectName: String { located.projectName }
    var settings: AmpSettings { layers.settings }

    /// The amp dir (flag > `AMP_DIR` > working directory) and the project's name (`--instance`,
    /// else the registry's name for it). An instance must come with an amp dir from the flag
    /// or the environment (the generator's drop-in), never from the working directory.
    static func locate(_ inputs: Inputs) throws(DaemonError) -> Located {
        let ampDir = AmpDirectory.resolve(flag: inputs.ampDirFlag, environment: inputs.environment, workingDirectory: inputs.workingDirectory)
        if let instance = inputs.instance {
            guard isValidInstanceName(instance) else {
                throw DaemonError(.usage, "--instance \(instance): not a valid name; use letters, digits, '-', '_' and '.', starting with a letter or digit")
            }
            guard ampDir.source != .workingDirectory else {
                throw DaemonError(
                    .config,
                    "amp@\(instance) has no amp dir: no AMP_DIR is set for it, so it is not registered; "
                        + "run `ampctl init --name \(instance)` in the project directory, then `systemctl --user daemon-reload`")
            }
        }
        return Located(ampDir: ampDir, projectName: inputs.instance ?? Registry.serviceName(forBase: ampDir.base, environment: inputs.environment))
    }

    /// Reads the layout marker and the configuration layers, measures the facts (binaries,
    /// version, cgroup limits, memory) and decides. Nothing in the amp dir is written.
    static func make(_ inputs: Inputs, located: Located, warn: (String) -> Void) async throws(DaemonError) -> StartupPlan {
        let ampDir = located.ampDir
        // An amp dir written by a newer amp is refused before anything reads it.
        if isDirectory(ampDir.path) {
            do throws(ConfigError) { try ampDir.checkLayout() } catch { throw DaemonError(ExitStatus(error), error.message) }
        }
        // Configuration first: a bad file, variable or flag must leave the amp dir untouched.
        let layers: ConfigurationLayers
        do throws(ConfigError) {
            layers = try ConfigurationLayers.load(
                ampDir: ampDir, environment: inputs.environment, workingDirectory: inputs.workingDirectory,
                commandLine: try inputs.commandLine.settingsLayer(workingDirectory: inputs.workingDirectory), warn: warn)
        } catch {
            throw DaemonError(ExitStatus(error), error.message)
        }
        if let url = layers.settings.externalURL {
            return StartupPlan(located: located, layers: layers, target: .external(url: url), cacheDirectory: nil)
        }
        let cacheDirectory = layers.settings.templateCache ? Registry.templateCacheDirectory(environment: inputs.environment) : nil
        var facts: ServerFacts
        do throws(PostgresError) {
            facts = try await ServerFacts.measure(
                binaryDirectory: layers.settings.binDir, environment: inputs.environment, cacheDirectory: cacheDirectory.map { $0 + "/versions" })
        } catch {
            throw DaemonError(ExitStatus(error), error.message, details: error.details)
        }
        facts.pgBackRest = try pgBackRest(layers.settings, located: located, environment: inputs.environment)
        let listener = TCPListener.planned(layers.settings, ampDir: ampDir)
        return try decide(located: located, layers: layers, facts: facts, listener: listener, cacheDirectory: cacheDirectory)
    }

    /// The pgBackRest engine of `[backup] engine = "pgbackrest"` (nil for amp's own archive):
    /// the executable must be installed, and commits cannot wait for it (`synchronous`).
    static func pgBackRest(_ settings: AmpSettings, located: Located, environment: [String: String]) throws(DaemonError) -> PgBackRest? {
        guard settings.backupArchive, settings.backupEngine == .pgbackrest else { return nil }
        guard !settings.backupSynchronous else {
            throw DaemonError(.config, "[backup] synchronous = true works with engine = \"amp\" only (pgBackRest archives whole WAL segments); set synchronous = false or engine = \"amp\"")
        }
        let ampDir = located.ampDir
        do throws(BackupError) {
            return try PgBackRest.forProject(
                ampDirectory: ampDir.path, dataDirectory: ampDir.metadb, target: settings.backupTarget ?? ampDir.path + "/backup",
                repository: settings.backupRepository, window: Double(settings.backupWindow.components.seconds), projectName: located.projectName,
                environment: environment)
        } catch {
            throw DaemonError(.config, error.message)
        }
    }

    /// The local server's plan: a pure function of the typed settings and the measured facts
    /// (``ServerSettings/decide(_:facts:)``), with the planned TCP listener's parameters.
    static func decide(located: Located, layers: ConfigurationLayers, facts: ServerFacts, listener: TCPListener?, cacheDirectory: String?) throws(DaemonError) -> StartupPlan {
        var server: ServerSettings
        do throws(ServerSettingsError) {
            server = try ServerSettings.decide(layers, facts: facts)
        } catch {
            switch error {
            case .postgres(let e): throw DaemonError(ExitStatus(e), e.message, details: e.details)
            case .unknownParameter(let message), .missingModule(let message): throw DaemonError(.config, message)
            }
        }
        if let listener { server.addListener(listener.parameters, layers: layers) }
        return StartupPlan(located: located, layers: layers, target: .local(server), cacheDirectory: cacheDirectory)
    }
}
