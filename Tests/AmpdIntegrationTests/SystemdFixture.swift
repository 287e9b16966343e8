#if canImport(Glibc)
import Glibc
#endif
import AmpRegistry
import AmpSystemd
import ChildProcess
import FoundationEssentials
import Synchronization
import Testing

/// The user manager the systemd tests drive: `systemctl --user` must answer.
///
/// In CI (`AMP_REQUIRE_SYSTEMD=1`, set by `make test` as root after
/// `Tests/harness/user-manager.sh` started a manager and journald) a missing manager is a
/// failure, never a skip; elsewhere the tests skip and say why.
enum UserManager {
    static var runtimeDirectory: String {
        if let x = getenv("XDG_RUNTIME_DIR"), x.pointee != 0 { return String(cString: x) }
        return "/run/user/\(getuid())"
    }

    static var required: Bool { getenv("AMP_REQUIRE_SYSTEMD").map { String(cString: $0) } == "1" }

    /// Whether `systemctl --user is-system-running` reports a usable manager, and what it said.
    static let probe: (available: Bool, answer: String) = {
        guard access(runtimeDirectory + "/systemd/private", F_OK) == 0 else {
            return (false, "no user manager socket at \(runtimeDirectory)/systemd/private")
        }
        let result = runSync("XDG_RUNTIME_DIR='\(runtimeDirectory)' systemctl --user is-system-running")
        let state = result.output.trimmedSpace
        return (["running", "degraded", "starting"].contains(state), "systemctl --user is-system-running: \(state)")
    }()
}

/// Enables a test only where a user manager runs (or where one is required, so that CI fails loudly).
let userManagerAvailable = ConditionTrait.enabled(
    if: geteuid() != 0 && (UserManager.required || UserManager.probe.available),
    "needs a systemd user manager and an unprivileged account: run `make test` (as root it starts one); \(UserManager.probe.answer)")

/// The result of running a tool to its end.
struct ToolResult: Sendable {
    var status: TerminationStatus?
    var output: String
    var ok: Bool { status == .exited(0) }
}

/// The environment the tools run with: ours, plus the runtime directory and the repository's
/// man pages (`systemd-analyze verify` checks `Documentation=man:` pages exist).
func toolEnvironment(_ extra: [String: String] = [:]) -> [String: String] {
    var env: [String: String] = [
        "PATH": "/usr/local/bin:/usr/bin:/bin", "LC_ALL": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0",
        "XDG_RUNTIME_DIR": UserManager.runtimeDirectory, "MANPATH": repositoryRoot + "/man:",
    ]
    if let home = getenv("HOME") { env["HOME"] = String(cString: home) }
    env.merge(extra) { _, new in new }
    return env
}

/// Runs a tool (stdout and stderr together), bounded by `timeout`.
func run(_ executable: String, _ arguments: [String], environment: [String: String] = toolEnvironment(),
         timeout: Duration = .seconds(120)) async -> ToolResult {
    let out = OutputBox()
    let child: ChildProcess
    do {
        child = try await ChildProcess.spawn(SpawnConfiguration(
            executable: executable, arguments: arguments, environment: environment, output: .lines { out.append($0) }))
    } catch {
        return ToolResult(status: nil, output: "\(error)")
    }
    let status = await child.wait(timeout: timeout)
    if status == nil { child.signal(SIGKILL); _ = await child.wait() }
    await child.waitForOutput(timeout: .seconds(2))
    return ToolResult(status: status, output: out.text)
}

/// Runs a shell command line to its end, blocking; for probes outside async contexts.
func runSync(_ commandLine: String) -> ToolResult {
    guard let pipe = popen(commandLine + " 2>&1", "r") else { return ToolResult(status: nil, output: "popen failed") }
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { fread($0.baseAddress, 1, $0.count, pipe) }
        if n <= 0 { break }
        output += chunk[0..<n]
    }
    let raw = pclose(pipe)
    let status: TerminationStatus = (raw & 0x7f) == 0 ? .exited((raw >> 8) & 0xff) : .signaled(raw & 0x7f)
    return ToolResult(status: status, output: String(decoding: output, as: UTF8.self))
}

/// The checkout (for `units/` and `man/`).
let repositoryRoot: String = {
    var path = #filePath
    for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)]) }
    return path
}()

/// The directory of the built products (ampd, amp-generator) next to the test bundle.
var productsDirectory: String {
    let exe = readLink("/proc/self/exe") ?? ""
    return String(exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)])
}

/// The template unit rendered for the built binaries.
func renderedTemplate(binDir: String = productsDirectory) -> String {
    (readFile(repositoryRoot + "/units/amp@.service.in") ?? "").replacing("@BINDIR@", with: binDir)
}

/// A unit template of its own (`amp-tPID-N@.service`, so a developer's real `amp@` units are
/// never touched) in `$XDG_RUNTIME_DIR/systemd/user`, projects registered for it through the
/// same ``UnitRenderer`` the generator uses, and clean-up in reverse order: units stopped,
/// failed states reset, files removed, `daemon-reload`, project directories removed.
final class SystemdFixture: @unchecked Sendable {
    private static let counter = Mutex(0)
    let prefix: String
    let unitDirectory = UserManager.runtimeDirectory + "/systemd/user"
    private let cleanup = Mutex<[@Sendable () async -> Void]>([])

    private init() {
        let n = Self.counter.withLock { $0 += 1; return $0 }
        prefix = "amp-t\(getpid())-\(n)"
    }

    /// Runs `body` with a fresh fixture and always cleans up after it.
    static func with(_ body: (SystemdFixture) async throws -> Void) async throws {
        let fixture = SystemdFixture()
        do {
            try await fixture.setUp()
            try await body(fixture)
        } catch {
            await fixture.tearDown()
            throw error
        }
        await fixture.tearDown()
    }

    func later(_ action: @escaping @Sendable () async -> Void) { cleanup.withLock { $0.append(action) } }

    private func setUp() async throws {
        let template = unitDirectory + "/\(prefix)@.service"
        try FileManager.default.createDirectory(atPath: unitDirectory, withIntermediateDirectories: true)
        writeFile(template, renderedTemplate())
        later { try? FileManager.default.removeItem(atPath: template) }
    }

    private func tearDown() async {
        let actions = cleanup.withLock { $0 }
        for action in actions.reversed() { await action() }
        _ = await systemctl("daemon-reload")
    }

    func unit(_ name: String) -> String { "\(prefix)@\(name).service" }

    /// Makes a project directory (its name may contain a space, to test quoting) and
    /// registers it as instance `name`; returns its base directory.
    func project(_ name: String, base spaced: Bool = false, autostart: Bool = false) async throws -> String {
        var template = Array((spaced ? "/tmp/amp sd.XXXXXX" : "/tmp/amp-sd.XXXXXX").utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { b in b.baseAddress.flatMap { mkdtemp($0) } }
        guard let made else { throw FixtureError("mkdtemp failed: errno \(errno)") }
        let base = String(cString: made)
        later { removeTree(base) }
        let renderer = UnitRenderer(templatePrefix: prefix, templatePath: unitDirectory + "/\(prefix)@.service", writer: "amp tests")
        let files = renderer.render(RegistryEntry(name: name, base: base, autostart: autostart))
        try UnitWriter.write(files, into: unitDirectory)
        let unit = self.unit(name)
        later { [unitDirectory] in
            for f in files { try? FileManager.default.removeItem(atPath: unitDirectory + "/" + f.path) }
            try? FileManager.default.removeItem(atPath: unitDirectory + "/\(unit).d")
        }
        later { [self] in
            _ = await systemctl("stop", unit)
            _ = await systemctl("reset-failed", unit)
        }
        let reload = await systemctl("daemon-reload")
        guard reload.ok else { throw FixtureError("daemon-reload failed: \(reload.output)") }
        return base
    }

    func systemctl(_ arguments: String..., timeout: Duration = .seconds(120)) async -> ToolResult {
        await run("/usr/bin/systemctl", ["--user"] + arguments, timeout: timeout)
    }

    /// One property of a unit (`systemctl --user show -p NAME --value`).
    func property(_ unit: String, _ name: String) async -> String {
        await run("/usr/bin/systemctl", ["--user", "show", "-p", name, "--value", unit]).output
            .trimmedSpace
    }

    /// The connection URL from the unit's status text (`ready: URL`).
    func url(_ unit: String) async -> String? {
        let status = await property(unit, "StatusText")
        guard status.hasPrefix("ready: ") else { return nil }
        return String(status.dropFirst("ready: ".count))
    }

    /// Journal entries of `unit` (as JSON objects), optionally filtered by more field matches.
    func journal(_ unit: String, matches: [String] = []) async -> [[String: String]] {
        let result = await run("/usr/bin/journalctl", ["--no-pager", "-o", "json", "_SYSTEMD_USER_UNIT=\(unit)"] + matches)
        return result.output.split(separator: "\n").compactMap { line in
            guard let object = try? JSONDecoder().decode([String: JournalValue].self, from: Data(line.utf8)) else { return nil }
            return object.compactMapValues(\.text)
        }
    }
}

/// A value in `journalctl -o json`: a string, an array of bytes (non-UTF-8 or multi-line
/// binary-safe values), or null.
enum JournalValue: Decodable {
    case text(String), bytes([UInt8]), other
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let s = try? c.decode(String.self) { self = .text(s) }
        else if let b = try? c.decode([UInt8].self) { self = .bytes(b) }
        else { self = .other }
    }
    var text: String? {
        switch self {
        case .text(let s): return s
        case .bytes(let b): return String(decoding: b, as: UTF8.self)
        case .other: return nil
        }
    }
}

struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The postmaster PID from `postmaster.pid`.
func postmasterPID(base: String) -> pid_t? {
    readFile(base + "/.amp/metadb/postmaster.pid")?.split(separator: "\n").first.flatMap { pid_t($0) }
}

/// Polls `condition` (async) until it holds or `timeout` passes.
func eventuallyAsync(timeout: Duration, every step: Duration = .milliseconds(100), _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: step)
    }
    return await condition()
}
