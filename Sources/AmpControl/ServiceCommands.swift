#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import AmpRegistry
import AmpSystemd
import ArgumentParser
import SystemSupport

/// Where the user manager finds what the generator would write, for installs without a
/// system-wide generator.
func userUnitDirectory(_ env: [String: String]) -> String? {
    Registry.configHome(environment: env).map { $0 + "/systemd/user" }
}

/// The installed user generator, if any.
func installedGenerator() -> String? {
    ["/run/systemd/user-generators", "/etc/systemd/user-generators", "/usr/local/lib/systemd/user-generators",
     "/usr/lib/systemd/user-generators", "/lib/systemd/user-generators"]
        .map { $0 + "/amp-generator" }.first { access($0, X_OK) == 0 }
}

/// Whether `systemctl --user` reaches a manager.
func userManagerRunning() async -> Bool {
    guard findExecutable("systemctl") != nil else { return false }
    let (_, text) = await runCaptured("systemctl", ["--user", "is-system-running"])
    return ["running", "degraded", "starting"].contains(text.trimmingWhitespace)
}


/// Makes the registry's units available: with the system-wide generator a daemon-reload
/// suffices; otherwise the same rendering is written into ~/.config/systemd/user first.
/// Returns what was done, for the user.
func makeUnitsAvailable(_ env: [String: String]) async throws(AmpctlError) -> String {
    var done: [String] = []
    if installedGenerator() == nil {
        guard let registryDir = Registry.defaultDirectory(environment: env), let unitDir = userUnitDirectory(env) else {
            throw AmpctlError(.cannotCreate, "no home directory for ~/.config/systemd/user")
        }
        let template = UnitRenderer.findTemplate(environment: env) ?? "/usr/lib/systemd/user/amp@.service"
        let renderer = UnitRenderer(templatePath: template, writer: "ampctl", environment: env)
        let (entries, _) = Registry(directory: registryDir).load()
        let problems = UnitDirectorySync.sync(entries, renderer: renderer, directory: unitDir)
        if let p = problems.first { throw AmpctlError(.cannotCreate, "\(p)") }
        done.append("units written to \(unitDir)")
    }
    if await userManagerRunning() {
        let (code, text) = await runCaptured("systemctl", ["--user", "daemon-reload"])
        if code != 0 { throw AmpctlError(.failure, "systemctl --user daemon-reload failed: \(text)") }
        done.append("systemd reloaded")
    } else {
        done.append("no systemd user manager reachable (run `systemctl --user daemon-reload` in your session)")
    }
    return done.joined(separator: "; ")
}

// MARK: - init / forget

struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init", abstract: "Create a project's amp dir and register it as amp@NAME.")
    @Argument(help: "Project directory (default: the current directory).") var directory: String?
    @Option(name: .customLong("name"), help: "Instance name (default: derived from the directory name).") var name: String?
    @Flag(name: .customLong("autostart"), help: "Start with the user's session.") var autostart = false
    @Flag(name: .customLong("json"), help: "Print the result as JSON.") var json = false
    @Option(name: .customLong("external"), help: ArgumentHelp("Use this PostgreSQL server instead of a local cluster (postgresql:// URL). A password in it is moved to ~/.config/amp/credentials/NAME.pgpass (0600) and never stored in the project.", valueName: "URL"))
    var external: String?

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let env = Platform.current.environment
            let cwd = Platform.current.workingDirectory
            let base = normalizePath((directory ?? cwd).hasPrefix("/") ? (directory ?? cwd) : cwd + "/" + (directory ?? ""))
            guard isDirectory(base) else { throw AmpctlError(.noInput, "\(base) is not a directory; create it first") }
            let projectName = name ?? suggestedInstanceName(forBase: base)
            guard isValidInstanceName(projectName) else {
                throw AmpctlError(.usage, "--name \(projectName): use 1–64 of letters, digits, '-', '_', '.', starting with a letter or digit")
            }
            if let reason = Registry.renderablePathProblem(base) { throw AmpctlError(.usage, "\(base): \(reason)") }
            guard let registryDir = Registry.defaultDirectory(environment: env) else { throw AmpctlError(.cannotCreate, "no home directory for the registry") }
            let registry = Registry(directory: registryDir)
            let (entries, _) = registry.load()
            if let other = entries.first(where: { $0.name == projectName && $0.base != base }) {
                throw AmpctlError(.dataError, "the name \(projectName) is taken by \(other.base); choose another with --name")
            }
            if let other = entries.first(where: { $0.base == base && $0.name != projectName }) {
                throw AmpctlError(.dataError, "\(base) is registered as \(other.name) already; use that name, or `ampctl forget \(other.name)` first")
            }
            let ampDir = AmpDirectory(base: base, source: .flag)
            var externalAnswer: String?
            if let external {
                externalAnswer = try await configureExternal(external, ampDir: ampDir, project: projectName, environment: env)
            }
            do throws(ConfigError) {
                try ampDir.ensureLayout()
            } catch {
                throw AmpctlError(.cannotCreate, error.message)
            }
            do {
                try registry.write(RegistryEntry(name: projectName, base: base, autostart: autostart))
            } catch {
                throw AmpctlError(.cannotCreate, "\(error)")
            }
            let done = try await makeUnitsAvailable(env)
            if json {
                outJSON(.object(["name": .string(projectName), "path": .string(base), "unit": .string("amp@\(projectName).service"),
                                 "autostart": .bool(autostart), "registry": .string(registry.file(for: projectName))]))
            } else {
                err("registered \(base) as amp@\(projectName) (\(registry.file(for: projectName))); \(done)")
                if let externalAnswer { err(externalAnswer) }
                err("next: systemctl --user start amp@\(projectName)   (or in the foreground: ampd run --amp-dir '\(base)')")
            }
            return .success
        }
    }
}

extension InitCommand {
    /// `--external URL`: the password (if the URL has one) into amp's credential file, the URL
    /// without it into `[postgres] url`; then one connection to say whether it answers (a
    /// warning, not an error: the server may simply be down right now).
    func configureExternal(_ given: String, ampDir: AmpDirectory, project: String, environment: [String: String]) async throws(AmpctlError) -> String {
        let (url, password) = ExternalURL.removingPassword(given)
        if let problem = ExternalURL.problem(url) { throw AmpctlError(.usage, "--external: the URL \(problem)") }
        let server: ExternalServer
        do {
            server = try ExternalServer(url: url, passFile: nil)
        } catch {
            throw AmpctlError(.usage, "--external: \(error.message); give a URL such as postgresql://app@db.example.com:5432/app")
        }
        if let (layer, _) = try? ConfigLoader.readFile(path: ampDir.configFile, baseDirectory: ampDir.base), layer.listen != nil {
            throw AmpctlError(.config, "\(ampDir.configFile) sets listen for the local cluster; an external server has no local listener: remove the listen line first")
        }
        var passFile: String?
        if let password, !password.isEmpty {
            guard let file = AmpSecrets.externalPassFile(project: project, environment: environment) else {
                throw AmpctlError(.config, "neither XDG_CONFIG_HOME nor HOME is set, so the password has nowhere to go; set HOME, or put it in ~/.pgpass and give the URL without it")
            }
            let parts = Dictionary(server.options.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
            let line = AmpSecrets.passFileLine(host: parts["host"] ?? "", port: parts["port"] ?? "5432", user: parts["user"] ?? "", password: password)
            do { try AmpSecrets.write(file, line + "\n") } catch {
                throw AmpctlError(.cannotCreate, "cannot store the password in \(file): \(error)")
            }
            passFile = file
        } else {
            switch AmpSecrets.existingExternalPassFile(project: project, environment: environment) {
            case .failure(let problem): throw AmpctlError(.noPermission, "the password file \(problem.message)")
            case .success(let file): passFile = file
            }
        }
        do { try makeDirectories(ampDir.path) } catch { throw AmpctlError(.cannotCreate, "cannot create \(ampDir.path): \(error); check the permissions of \(ampDir.base)") }
        let text = FileContents.text(ampDir.configFile) ?? ""
        do {
            let edited = try ConfigFileEdit.settingPostgresString(text, key: "url", value: url, path: ampDir.configFile)
            try writeFileAtomically(ampDir.configFile, Array(edited.utf8), mode: 0o644)
        } catch let error as ConfigError {
            throw AmpctlError(.config, error.message)
        } catch {
            throw AmpctlError(.cannotCreate, "cannot write \(ampDir.configFile): \(error)")
        }
        let probing = try? ExternalServer(url: url, passFile: passFile)
        let answer = probing?.probe()  // bounded by connect_timeout
        let stored = passFile.map { "the password is in \($0) (0600), " } ?? ""
        switch answer {
        case .success(let a)?:
            return "external server \(server.display) answers (PostgreSQL \(a.version), role \(a.user)); \(stored)[postgres] url is set in \(ampDir.configFile)"
        case .failure(let e)?:
            return "warning: \(e.message); \(stored)[postgres] url is set in \(ampDir.configFile): fix the server or the password, then start the project"
        case nil:
            return "[postgres] url is set in \(ampDir.configFile)"
        }
    }
}

struct ForgetCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forget", abstract: "Unregister a project; its data stays where it is.")
    @Argument(help: "Project name.", completion: projectCompletion) var name: String

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let env = Platform.current.environment
            let project = try resolveProject(name, address: nil, environment: env)
            guard let dir = Registry.defaultDirectory(environment: env) else { throw AmpctlError(.failure, "no registry") }
            if await userManagerRunning() {
                _ = await runCaptured("systemctl", ["--user", "disable", "--now", project.unit])
                _ = await runCaptured("systemctl", ["--user", "stop", project.unit])
            }
            do { try Registry(directory: dir).remove(name) } catch { throw AmpctlError(.cannotCreate, "\(error)") }
            // amp's secrets of the project go with it: a later project of the same name must not
            // inherit its password.
            var removed: [String] = []
            for file in [AmpSecrets.tcpPasswordFile(project: name, environment: env), AmpSecrets.externalPassFile(project: name, environment: env)] {
                if let file, unlink(file) == 0 {
                    removed.append(file)
                    rmdir(parentDirectory(file))  // only when empty
                }
            }
            let done = try await makeUnitsAvailable(env)
            err("forgot \(name); its data stays in \(project.ampDir)\(removed.isEmpty ? "" : "; removed its passwords (\(removed.joined(separator: ", ")))"); \(done)")
            return .success
        }
    }
}

// MARK: - systemctl / journalctl

/// A registered project, for the commands that go through systemd.
func registeredProject(_ name: String?) throws(AmpctlError) -> Project {
    let project = try resolveProject(name, address: nil, environment: Platform.current.environment)
    guard project.registered else {
        throw AmpctlError(.noInput, "\(project.base) is not registered, so there is no amp@ unit for it; run `ampctl init` there (or `ampd run` in the foreground)")
    }
    return project
}

func systemctl(_ verb: String, _ name: String?) async throws {
    try await guarded { () async throws(AmpctlError) -> ExitStatus in
        let project = try registeredProject(name)
        guard findExecutable("systemctl") != nil else { throw AmpctlError(.unavailable, "systemctl is not installed; use `ampd run --amp-dir '\(project.base)'`") }
        if verb == "start" || verb == "restart" {
            // A unit left failed (e.g. at the start limit) would refuse or be limited: clear it
            // first, and say so, since the failure itself is worth a look.
            let (_, state) = await runCaptured("systemctl", ["--user", "is-failed", project.unit])
            if state.trimmingWhitespace == "failed" {
                let (resetCode, resetText) = await runCaptured("systemctl", ["--user", "reset-failed", project.unit])
                if resetCode == 0 {
                    err("\(project.unit) was in the failed state; reset it (why it failed: `ampctl logs \(project.name)`)")
                } else {
                    err("\(project.unit) is failed and could not be reset: \(resetText.trimmingWhitespace)")
                }
            }
        }
        let code = await runInherited("systemctl", ["--user", verb, project.unit])
        if code != 0 {
            throw AmpctlError(.failure, "systemctl --user \(verb) \(project.unit) failed (exit \(code)); see `ampctl status \(project.name)` and `ampctl logs \(project.name)`")
        }
        if verb != "stop" { err("\(project.unit): \(verb)ed; see `ampctl status \(project.name)`") }
        return .success
    }
}

struct StartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "start", abstract: "systemctl --user start amp@NAME (returns once PostgreSQL answers).")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    func validate() throws { try selection.check(positionalName) }
    func run() async throws { try await systemctl("start", name) }
}

struct StopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "stop", abstract: "systemctl --user stop amp@NAME.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    func validate() throws { try selection.check(positionalName) }
    func run() async throws { try await systemctl("stop", name) }
}

struct RestartCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restart", abstract: "systemctl --user restart amp@NAME.")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    func validate() throws { try selection.check(positionalName) }
    func run() async throws { try await systemctl("restart", name) }
}

struct LogsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "logs", abstract: "journalctl for amp@NAME (ampd's and PostgreSQL's messages).")
    @Argument(help: ArgumentHelp("Project name (or --project NAME; default: the nearest .amp above the current directory).", valueName: "name"), completion: projectCompletion)
    var positionalName: String?
    @OptionGroup var selection: ProjectSelection
    /// The project: `--project NAME` or the first argument.
    var name: String? { selection.project ?? positionalName }
    func validate() throws { try selection.check(positionalName) }
    @Flag(name: [.customShort("f"), .customLong("follow")], help: "Follow new entries.") var follow = false
    @Option(name: [.customShort("n"), .customLong("lines")], help: "How many recent entries.") var lines = 50

    func run() async throws {
        try await guarded { () async throws(AmpctlError) -> ExitStatus in
            let project = try registeredProject(name)
            var args = ["--user-unit=\(project.unit)", "-n", "\(lines)", "--no-pager"]
            if follow { args.append("-f") }
            throw execReplacing("journalctl", args)
        }
    }
}
