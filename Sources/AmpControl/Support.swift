#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import AmpRegistry
import ArgumentParser
import ChildProcess
import Varlink
import Synchronization
import SystemSupport
import UnixSignals

extension ExitStatus {
    /// The codes `ampctl` exits with.
    public static let ampctlCodes: [ExitStatus] = [
        .success, .failure, .notRunning, .usage, .dataError, .noInput, .unavailable, .cannotCreate, .tempFail, .protocolError, .noPermission, .config,
        .hangUp, .interrupted, .terminated,
    ]

    /// What the code means for `ampctl`, for documentation.
    public var ampctlMeaning: String {
        switch self {
        case .success: return "success"
        case .failure: return "failure (for doctor: a check failed)"
        case .notRunning: return "status: the service is not running"
        case .usage: return "bad command-line usage"
        case .dataError: return "database exists, does not exist, or has a bad name"
        case .noInput: return "no such project (not registered, no .amp above the current directory)"
        case .unavailable: return "the service does not answer, or a needed tool is missing"
        case .cannotCreate: return "the amp dir, registry or unit files cannot be written"
        case .tempFail: return "PostgreSQL is starting or stopping; try again"
        case .protocolError: return "the service broke the varlink protocol"
        case .noPermission: return "permission denied, or a socket or runtime directory that is not the user's own"
        case .config: return "a registry entry is broken"
        case .software: return "not used by ampctl"
        case .hangUp, .interrupted, .terminated: return "interrupted by SIGHUP, SIGINT or SIGTERM (128 + the signal), after cleaning up"
        }
    }
}

/// A failure `ampctl` reports: one line naming what and the fix, and an exit code.
public struct AmpctlError: Error, CustomStringConvertible {
    public var code: ExitStatus
    public var message: String
    public init(_ code: ExitStatus, _ message: String) {
        self.code = code
        self.message = message
    }
    public var description: String { message }
}

/// Where output goes: data on stdout, messages on stderr; colour only on a terminal without
/// `NO_COLOR`.
struct Output {
    let colour: Bool
    init(environment: [String: String]) {
        colour = shouldUseColour(fileDescriptor: 1, environment: environment)
    }

    func paint(_ text: String, _ code: String) -> String { colour ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text }
    func green(_ t: String) -> String { paint(t, "32") }
    func red(_ t: String) -> String { paint(t, "31") }
    func yellow(_ t: String) -> String { paint(t, "33") }
    func bold(_ t: String) -> String { paint(t, "1") }
    func dim(_ t: String) -> String { paint(t, "2") }
}

/// Writes a line to standard output.
func out(_ text: String) { printLine(text) }

/// Writes a line to standard error.
func err(_ text: String) { printError(text) }

/// JSON on standard output (pretty, keys in the order given).
func outJSON(_ value: JSONValue) { out(pretty(value)) }

/// Prints a protocol value as JSON (through the same coding as the wire).
func outJSON<T: Encodable>(_ value: T) {
    do {
        outJSON(try JSONValueEncoder().encode(value))
    } catch {
        err("ampctl: cannot print \(T.self) as JSON: \(error)")
    }
}

func pretty(_ value: JSONValue, indent: String = "") -> String {
    let inner = indent + "  "
    switch value {
    case .array(let a):
        if a.isEmpty { return "[]" }
        return "[\n" + a.map { inner + pretty($0, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "]"
    case .object(let o):
        if o.isEmpty { return "{}" }
        return "{\n" + o.entries.map { inner + JSONValue.string($0.0).serialized + ": " + pretty($0.1, indent: inner) }.joined(separator: ",\n") + "\n" + indent + "}"
    default:
        return value.serialized
    }
}

/// A project `ampctl` works on.
struct Project {
    var name: String
    /// The directory holding `.amp`.
    var base: String
    var registered: Bool
    var autostart: Bool
    /// The varlink socket.
    var socket: String

    var ampDir: String { base + "/.amp" }
    var unit: String { "amp@\(name).service" }
}

/// How every command names its project: `--project NAME` everywhere and, where it always
/// was, the first argument as well (scripts keep working); neither: the nearest `.amp` above
/// the working directory.
struct ProjectSelection: ParsableArguments {
    @Option(name: .customLong("project"), help: "Project name (default: the nearest .amp above the current directory).", completion: projectCompletion)
    var project: String?

    /// Refuses two different names (`ampctl status web --project api`).
    func check(_ positional: String?) throws {
        if let project, let positional, project != positional {
            throw ValidationError("the project is named twice (\(positional) and --project \(project)); give one")
        }
    }
}

/// The options every project command shares.
struct ProjectOptions: ParsableArguments {
    @OptionGroup var selection: ProjectSelection

    @Option(name: .customLong("address"), help: ArgumentHelp("Talk to ampd at this varlink address instead of finding it.", valueName: "unix:PATH"))
    var address: String?

    @Flag(name: .customLong("json"), help: "Print data as JSON.")
    var json = false
}

/// Finds the project: an explicit name from the registry, else the nearest `.amp` above the
/// working directory.
func resolveProject(_ name: String?, address: String?, environment: [String: String]) throws(AmpctlError) -> Project {
    let runtime = Metadb.runtimeDirectory(environment: environment)
    var socketOverride: String?
    if let address {
        guard let path = parseVarlinkAddress(address) else {
            throw AmpctlError(.usage, "--address \(address): not a varlink address; use unix:/path/to/socket")
        }
        socketOverride = path
    }
    let registry = Registry.defaultDirectory(environment: environment).map(Registry.init(directory:))
    if let name {
        guard isValidInstanceName(name) else {
            throw AmpctlError(.usage, "\(name): not a valid project name (letters, digits, '-', '_', '.')")
        }
        guard let registry else { throw AmpctlError(.noInput, "no home directory, so no registry to find \(name) in") }
        let loaded = registry.load()
        if let e = loaded.entries.first(where: { $0.name == name }) {
            return Project(name: e.name, base: e.base, registered: true, autostart: e.autostart,
                           socket: socketOverride ?? Metadb.socketPath(runtimeDirectory: runtime, name: e.name))
        }
        if let p = loaded.problems.first(where: { $0.file == registry.file(for: name) }) {
            throw AmpctlError(.config, "\(p)")
        }
        throw AmpctlError(.noInput, "no project named \(name) in \(registry.directory); see `ampctl list`, or register one with `ampctl init --name \(name)` in its directory")
    }
    let cwd = Platform.current.workingDirectory
    var dir = cwd
    while true {
        if isDirectory(dir == "/" ? "/.amp" : dir + "/.amp") { break }
        if dir == "/" {
            if let socketOverride {
                // Only the socket is known: name the project after its directory.
                let parent = String(socketOverride[..<(socketOverride.lastIndex(of: "/") ?? socketOverride.startIndex)])
                let name = parent.split(separator: "/").last.map(String.init) ?? "ampd"
                return Project(name: name, base: "", registered: false, autostart: false, socket: socketOverride)
            }
            throw AmpctlError(.noInput, "no .amp above \(cwd); run `ampctl init` in the project directory, or name a project (`ampctl list`)")
        }
        dir = String(dir[..<(dir.lastIndex(of: "/") ?? dir.startIndex)])
        if dir.isEmpty { dir = "/" }
    }
    let entry = registry?.entry(forBase: dir)
    let projectName = entry?.name ?? suggestedInstanceName(forBase: dir)
    return Project(name: projectName, base: dir, registered: entry != nil, autostart: entry?.autostart ?? false,
                   socket: socketOverride ?? Metadb.socketPath(runtimeDirectory: runtime, name: projectName))
}

/// Connects to the project's ampd; errors say how to start it.
func connect(_ project: Project) throws(AmpctlError) -> MetadbClient {
    let runtime = Metadb.runtimeDirectory(environment: Platform.current.environment)
    if project.socket == Metadb.socketPath(runtimeDirectory: runtime, name: project.name),
       let problem = Metadb.socketDirectoryProblem(runtimeDirectory: runtime, name: project.name) {
        throw AmpctlError(.noPermission, "not trusting the socket of \(project.name): \(problem); another user may have made it: remove it, or set XDG_RUNTIME_DIR to a directory of yours with mode 0700")
    }
    do {
        return try MetadbClient(path: project.socket)
    } catch {
        throw AmpctlError(error, project: project)
    }
}

func startHint(_ project: Project) -> String {
    project.registered ? "ampctl start \(project.name)" : "ampd run --amp-dir '\(project.base)' (or register it: ampctl init '\(project.base)')"
}

/// Resolves the project, connects to its ampd and runs `body` with the typed client; every
/// failure becomes one line and an exit code through ``AmpctlError/init(_:project:)``.
func withProject<T>(_ name: String?, address: String?, _ body: (MetadbClient) async throws(MetadbClientError) -> T) async throws(AmpctlError) -> T {
    let project = try resolveProject(name, address: address, environment: Platform.current.environment)
    let client = try connect(project)
    do {
        return try await body(client)
    } catch {
        throw AmpctlError(error, project: project)
    }
}

extension AmpctlError {
    /// The one mapping from a failed call to an exit code and a message that names the fix.
    init(_ error: MetadbClientError, project: Project) {
        switch error {
        case .notRunning:
            self.init(.unavailable, "\(project.name) is not running (nothing at \(project.socket)); start it: \(startHint(project))")
        case .accessDenied:
            self.init(.noPermission, "\(project.socket): permission denied; run ampctl as the project's owner")
        case .service(let e):
            switch e {
            case .notReady(let state, let phase):
                self.init(.tempFail, "\(project.name) is not ready (\(state): \(phase)); wait, or see `ampctl status \(project.name)`")
            case .databaseExists(let name): self.init(.dataError, "database \(name) exists already; pick another name or drop it first")
            case .noSuchDatabase(let name): self.init(.dataError, "database \(name) does not exist; see `ampctl databases`")
            case .invalidDatabaseName(let name, let reason): self.init(.dataError, "database name \(name): \(reason)")
            case .protectedDatabase(let name): self.init(.dataError, "database \(name) cannot be dropped")
            case .databaseInUse(let name, let n, let sessions):
                let who = sessions.isEmpty ? "\(n) other session(s)" : sessions.joined(separator: ", ")
                self.init(.dataError, "database \(name) is in use by \(who); close them or add --force (ends them)")
            case .queryFailed(let message, _): self.init(.failure, "PostgreSQL: \(message)")
            case .noSuchSnapshot(let name): self.init(.dataError, "snapshot \(name) does not exist; see `ampctl snapshot list`")
            case .snapshotExists(let name): self.init(.dataError, "snapshot \(name) exists already; pick another name or delete it first (`ampctl snapshot delete \(name)`)")
            case .snapshotIncompatible(let name, let snapshot, let cluster):
                self.init(.dataError, "snapshot \(name) is of PostgreSQL \(snapshot), the cluster of \(cluster); it cannot be restored here (keep it, or delete it)")
            case .snapshotFailed(let message): self.init(.failure, "\(project.name): \(message)")
            case .backupFailed(let message): self.init(.failure, "\(project.name): \(message)")
            case .notRestorable(let message): self.init(.noInput, "\(project.name): \(message)")
            case .replicationFailed(let message): self.init(.dataError, "\(project.name): \(message)")
            }
        case .varlink(let e) where e == .permissionDenied:
            self.init(.noPermission, "\(project.socket): permission denied; run ampctl as the project's owner")
        case .varlink(let e): self.init(.protocolError, "\(e)")
        case .protocolViolation(let m): self.init(.protocolError, m)
        case .transport(let m): self.init(.unavailable, m)
        case .untrusted(let m): self.init(.noPermission, m)
        }
    }
}

/// Runs a program to its end with the terminal inherited; returns its exit status (127 when
/// it could not be started).
func runInherited(_ executable: String, _ arguments: [String]) async -> Int32 {
    guard let path = findExecutable(executable) else { return 127 }
    return (try? await runInteractive(path, arguments, environment: Platform.current.environment)) ?? 127
}

/// Runs a program and returns its output (stdout and stderr together) and status (1 when it
/// was stopped after 30 s, 127 when it could not be started).
func runCaptured(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) async -> (Int32, String) {
    guard let path = findExecutable(executable) else { return (127, "\(executable): not found") }
    do {
        let output = try await runCommand(path, arguments, environment: environment ?? Platform.current.environment)
        return (output.status ?? 1, output.text)
    } catch {
        return (127, "\(error)")
    }
}

/// The full path of `name` on `PATH` (or `name` itself when it contains a slash).
func findExecutable(_ name: String) -> String? {
    if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
    return findProgram(name, searchPath: Platform.current.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin")
}

/// Replaces this process with `executable` (for `psql`, `logs -f`).
func execReplacing(_ executable: String, _ arguments: [String]) -> AmpctlError {
    guard let path = findExecutable(executable) else {
        return AmpctlError(.unavailable, "\(executable) is not installed; install it (Debian: apt install \(executable == "psql" ? "postgresql-client" : "systemd"))")
    }
    var argv: [UnsafeMutablePointer<CChar>?] = ([executable] + arguments).map { strdup($0) }
    argv.append(nil)
    execv(path, &argv)
    return AmpctlError(.failure, "cannot run \(path): \(String(cString: strerror(errno)))")
}

/// Shell-quotes a value for `eval`.
func shellQuote(_ s: String) -> String { "'" + s.replacing("'", with: "'\\''") + "'" }

func humanBytes(_ n: Int64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"]
    var v = Double(n)
    var i = 0
    while v >= 1024 && i < units.count - 1 { v /= 1024; i += 1 }
    return i == 0 ? "\(n) B" : "\((v * 10).rounded() / 10) \(units[i])"
}

func humanDuration(_ seconds: Double) -> String {
    let s = Int(seconds)
    if s < 60 { return "\(s)s" }
    if s < 3600 { return "\(s / 60)min \(s % 60)s" }
    if s < 86400 { return "\(s / 3600)h \((s % 3600) / 60)min" }
    return "\(s / 86400)d \((s % 86400) / 3600)h"
}

/// Shell completion of project names: the registry's entries.
let projectCompletion = CompletionKind.custom { _, _, prefix in
    guard let dir = Registry.defaultDirectory(environment: Platform.current.environment) else { return [] }
    return Registry(directory: dir).load().entries.map(\.name).filter { $0.hasPrefix(prefix) }
}

extension Metadb.GetConnection.Reply {
    /// The project's cluster as ampctl reaches it: this connection's socket.
    var server: DatabaseServer { .socket(display: "the project's cluster", directory: socketDirectory, port: port) }
}

extension AmpctlError {
    /// The exit status and message of a failed transfer (import, export, push, pull).
    init(_ error: TransferError) {
        switch error.code {
        case .data: self.init(.dataError, error.message)
        case .noInput: self.init(.noInput, error.message)
        case .unavailable: self.init(.unavailable, error.message)
        case .failed: self.init(.failure, error.message)
        case .cannotCreate: self.init(.cannotCreate, error.message)
        case .refused: self.init(.noPermission, error.message)
        case .interrupted: self.init(.interrupted, error.message)
        }
    }
}

/// Runs `body` as a child task that SIGINT, SIGTERM and SIGHUP cancel: a child tool it runs
/// is ended (swift-subprocess kills it on cancellation), its own clean-up runs, and then the
/// signal is reported as an error (exit 130, 143 or 129) naming what `interrupted` says was
/// left as it was. Without this a Ctrl-C ends ampctl at once, skipping its clean-up.
/// What ends first in ``cancellingOnSignals(interrupted:_:)``.
private enum SignalRace<T: Sendable>: Sendable { case done(T), failed(AmpctlError), signal(Int32) }

func cancellingOnSignals<T: Sendable>(
    interrupted: String, _ body: @escaping @Sendable () async throws(AmpctlError) -> T
) async throws(AmpctlError) -> T {
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm, .sighup)
    let outcome = await withTaskGroup(of: SignalRace<T>?.self) { group -> SignalRace<T> in
        group.addTask {
            do throws(AmpctlError) { return .done(try await body()) } catch { return .failed(error) }
        }
        group.addTask {
            for await signal in signals { return .signal(signal.rawValue) }
            return nil
        }
        var interruptedBy: Int32?
        while let next = await group.next() {
            switch next {
            case .signal(let number)?:
                // Cancel the work and wait for it: its clean-up runs before ampctl exits.
                interruptedBy = number
                group.cancelAll()
            case .done, .failed:
                group.cancelAll()
                if let interruptedBy { return .signal(interruptedBy) }
                return next ?? .signal(SIGTERM)
            case nil: continue
            }
        }
        return .signal(interruptedBy ?? SIGTERM)
    }
    switch outcome {
    case .done(let value): return value
    case .failed(let error): throw error
    case .signal(let number):
        throw AmpctlError(.interrupted(by: number), "interrupted by \(signalName(number)); \(interrupted)")
    }
}

/// Asks `question` on the terminal (y/N); with `yes`, or refuses when there is no terminal
/// to ask on.
func confirm(_ question: String, yes: Bool) throws(AmpctlError) {
    if yes { return }
    guard isatty(0) == 1 else { throw AmpctlError(.usage, "\(question) — not asked without a terminal; add --yes to confirm") }
    writeAll(2, Array("\(question) [y/N] ".utf8))
    var answer: [UInt8] = []
    var byte: UInt8 = 0
    while read(0, &byte, 1) == 1, byte != 10 { answer.append(byte) }
    let text = String(decoding: answer, as: UTF8.self).trimmingWhitespace.lowercased()
    guard text == "y" || text == "yes" else { throw AmpctlError(.failure, "not confirmed; nothing was changed") }
}

/// Reads a secret from the terminal (`/dev/tty`) with echo off, after `prompt` on it; nil
/// without a terminal. For passwords that must not be written on the command line.
func readSecret(prompt: String) -> String? {
    let fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var saved = termios()
    guard tcgetattr(fd, &saved) == 0 else { return nil }
    var quiet = saved
    quiet.c_lflag &= ~tcflag_t(ECHO)
    _ = tcsetattr(fd, TCSAFLUSH, &quiet)
    defer {
        _ = tcsetattr(fd, TCSAFLUSH, &saved)
        writeAll(fd, Array("\n".utf8))
    }
    writeAll(fd, Array(prompt.utf8))
    var bytes: [UInt8] = []
    var byte: UInt8 = 0
    while read(fd, &byte, 1) == 1, byte != 10, bytes.count < 4096 { bytes.append(byte) }
    return String(decoding: bytes, as: UTF8.self)
}

/// Overwrites the command-line argument equal to `argument` in this process's own argv (what
/// `ps` and `/proc/PID/cmdline` show) with `replacement`, cut to fit and padded with NULs: a
/// password given on the command line is visible to every user only until this runs.
func scrubArgument(_ argument: String, with replacement: String) {
    for i in 1..<Int(CommandLine.argc) {
        guard let pointer = CommandLine.unsafeArgv[i], String(cString: pointer) == argument else { continue }
        let length = strlen(pointer)
        let bytes = Array(replacement.utf8.prefix(length))
        for j in 0..<length { pointer[j] = j < bytes.count ? CChar(bitPattern: bytes[j]) : 0 }
    }
}
