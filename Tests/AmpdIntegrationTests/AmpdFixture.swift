#if canImport(Glibc)
import Glibc
#endif
import ChildProcess
import Dispatch
import FoundationEssentials
import Synchronization
import Testing
import ThreadSupport

/// Drives the built `ampd` binary. Everything a test starts or creates is registered here and
/// cleaned up in reverse order when the fixture goes away: processes it started (by their
/// handle, never by name), then directories.
final class AmpdFixture: @unchecked Sendable {
    /// The project directory (BASE); `.amp` lives inside it.
    let base: String
    private let cleanup = Mutex<[@Sendable () -> Void]>([])

    init() {
        var template = Array("/tmp/amp-it.XXXXXX".utf8CString)
        let made: UnsafeMutablePointer<CChar>? = template.withUnsafeMutableBufferPointer { buf in buf.baseAddress.flatMap { mkdtemp($0) } }
        base = made.map { String(cString: $0) } ?? "/tmp/amp-it-failed"
        let path = base
        defer_ { removeTree(path) }
    }

    deinit {
        let actions = cleanup.withLock { $0 }
        for action in actions.reversed() { action() }
    }

    /// Registers a clean-up action, run in reverse order of registration.
    func defer_(_ action: @escaping @Sendable () -> Void) { cleanup.withLock { $0.append(action) } }

    var ampDir: String { base + "/.amp" }
    /// `XDG_RUNTIME_DIR` of the ampd runs (0700, inside the fixture).
    var runtimeDirectory: String {
        let dir = base + "/run"
        mkdir(dir, 0o700)
        return dir
    }
    /// The varlink socket of the amp dir's ampd (unregistered: named after the directory).
    var socket: String { runtimeDirectory + "/amp/" + String(base.split(separator: "/").last ?? "") + "/io.amp.Metadb" }
    var metadb: String { ampDir + "/metadb" }

    /// The `ampd` built next to the test bundle (or `$AMPD` when set).
    static var ampdPath: String {
        if let p = getenv("AMPD") { return String(cString: p) }
        let exe = readLink("/proc/self/exe") ?? ""
        return String(exe[..<(exe.lastIndex(of: "/") ?? exe.endIndex)]) + "/ampd"
    }

    /// Starts `ampd ARGS` with `environment` added to a minimal one; the process is killed
    /// (SIGKILL) at clean-up if still running.
    func start(_ arguments: [String], environment: [String: String] = [:], workingDirectory: String? = nil,
               executable: String = AmpdFixture.ampdPath) async throws -> AmpdRun {
        var env = [
            "PATH": getenv("PATH").map { String(cString: $0) } ?? "/usr/bin:/bin",
            "HOME": getenv("HOME").map { String(cString: $0) } ?? "/tmp", "NO_COLOR": "1",
            // ampd's varlink socket goes below the fixture, not into the real runtime directory.
            "XDG_RUNTIME_DIR": runtimeDirectory,
        ]
        env.merge(environment) { _, new in new }
        let run = AmpdRun()
        let child = try await ChildProcess.spawn(SpawnConfiguration(
            executable: executable, arguments: arguments, environment: env,
            workingDirectory: workingDirectory ?? base, output: .lines { run.append($0) }))
        run.process = child
        defer_ {
            if child.signal(SIGKILL) {
                let done = DispatchSemaphore(value: 0)
                child.onExit { _ in done.signal() }
                done.wait()
            }
        }
        return run
    }

    /// Runs `ampd ARGS` to its end (bounded) and returns its exit status and output.
    func runToEnd(_ arguments: [String], environment: [String: String] = [:], timeout: Duration = .seconds(60)) async throws -> (TerminationStatus?, [String]) {
        let run = try await start(arguments, environment: environment)
        let status = await run.process?.wait(timeout: timeout)
        await run.process?.waitForOutput(timeout: .seconds(2))
        return (status, run.lines)
    }
}

extension AmpdFixture {
    /// Starts `ampd run` for this amp dir (`extra` arguments added) and waits, 90 s at most,
    /// for its ready line.
    func ready(_ extra: [String] = []) async throws -> AmpdRun {
        let run = try await start(["run", "--amp-dir", base] + extra)
        try #require(await run.waitForLine("ready in ", timeout: .seconds(90)), "\(run.text)")
        return run
    }
}

/// One running `ampd`, with its output.
final class AmpdRun: @unchecked Sendable {
    var process: ChildProcess?
    private let output = Mutex<[String]>([])
    private let waiters = Mutex<[(String, Race<Bool>)]>([])

    var lines: [String] { output.withLock { $0 } }
    var text: String { lines.joined(separator: "\n") }

    func append(_ lines: [String]) {
        output.withLock { $0 += lines }
        let pending = waiters.withLock { $0 }
        for (needle, race) in pending where lines.contains(where: { $0.contains(needle) }) { race.resolve(true) }
    }

    /// Waits until a line containing `needle` appears (true) or the process ends or the
    /// timeout passes (false).
    func waitForLine(_ needle: String, timeout: Duration = .seconds(60)) async -> Bool {
        let race = Race<Bool>()
        waiters.withLock { $0.append((needle, race)) }
        if lines.contains(where: { $0.contains(needle) }) { return true }
        process?.onExit { _ in
            // Let the last output arrive before giving up.
            usleep(300_000)
            race.resolve(false)
        }
        return await race.wait(orAfter: timeout, false)
    }

    /// Stops it: SIGTERM, then a wait of at most 30 s.
    func stop() async {
        process?.signal(SIGTERM)
        _ = await process?.wait(timeout: .seconds(30))
    }

    /// The connection URL from the ready line.
    var url: String? {
        guard let line = lines.first(where: { $0.hasPrefix("ready in ") }),
              let start = line.firstRange(of: ": postgresql://")?.lowerBound else { return nil }
        let rest = line[line.index(start, offsetBy: 2)...]
        return String(rest.prefix { $0 != " " })
    }
}

func readLink(_ path: String) -> String? {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buffer, 4096)
    guard n >= 0 else { return nil }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func readFile(_ path: String) -> String? {
    FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
}

/// Writes `text` to `path` in place. (FileManager.createFile writes "atomically" through a
/// /tmp/TemporaryDirectory.* that corelibs-foundation leaves behind: tests must leave nothing.)
func writeFile(_ path: String, _ text: String) {
    guard let f = fopen(path, "w") else { return }
    _ = text.utf8CString.withUnsafeBufferPointer { fwrite($0.baseAddress, 1, $0.count - 1, f) }
    fclose(f)
}

func isAlive(_ pid: pid_t) -> Bool { kill(pid, 0) == 0 || errno == EPERM }

/// Waits (bounded) until `condition` holds, checking on each change we cannot be notified of.
func eventually(timeout: Duration = .seconds(10), _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return condition()
}

let unprivileged = ConditionTrait.enabled(
    if: geteuid() != 0, "PostgreSQL refuses to run as root: run the suite with `make test`, which uses an unprivileged account")

/// Removes a test's directory tree. A PostgreSQL told to quit when its ampd was killed
/// (PR_SET_PDEATHSIG) may still be writing its shutdown files for a moment, so removal is
/// retried for up to 10 s until nothing is left: tests leave nothing behind.
func removeTree(_ path: String) {
    for _ in 0..<100 {
        try? FileManager.default.removeItem(atPath: path)
        if access(path, F_OK) != 0 { return }
        usleep(100_000)
    }
}
