#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CSpawn
import SystemSupport
import Synchronization
import ThreadSupport

/// How a child process ended.
public enum TerminationStatus: Sendable, Equatable, CustomStringConvertible {
    /// `exit(code)`.
    case exited(Int32)
    /// Ended by a signal.
    case signaled(Int32)

    /// Whether the process exited with code 0.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): return "exit code \(code)"
        case .signaled(let signal): return "killed by signal \(signal) (\(signalName(signal)))"
        }
    }
}

/// The conventional name of a signal number, e.g. `SIGKILL`.
public func signalName(_ signal: Int32) -> String {
    switch signal {
    case SIGHUP: return "SIGHUP"
    case SIGINT: return "SIGINT"
    case SIGQUIT: return "SIGQUIT"
    case SIGILL: return "SIGILL"
    case SIGABRT: return "SIGABRT"
    case SIGBUS: return "SIGBUS"
    case SIGFPE: return "SIGFPE"
    case SIGKILL: return "SIGKILL"
    case SIGSEGV: return "SIGSEGV"
    case SIGPIPE: return "SIGPIPE"
    case SIGTERM: return "SIGTERM"
    case SIGUSR1: return "SIGUSR1"
    case SIGUSR2: return "SIGUSR2"
    case SIGSTOP: return "SIGSTOP"
    default: return "signal \(signal)"
    }
}

/// An account a child runs as when the parent is root.
public struct ProcessCredentials: Sendable, Equatable {
    public var uid: uid_t
    public var gid: gid_t
    public var supplementaryGroups: [gid_t]
    public var name: String

    public init(uid: uid_t, gid: gid_t, supplementaryGroups: [gid_t], name: String) {
        self.uid = uid
        self.gid = gid
        self.supplementaryGroups = supplementaryGroups
        self.name = name
    }

    /// Looks an account up by name in the password database, with its groups.
    public static func lookup(user name: String) -> ProcessCredentials? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwnam_r(name, &pwd, &buffer, buffer.count, &result) == 0, result != nil else { return nil }
        let uid = pwd.pw_uid
        let gid = pwd.pw_gid
        var count: Int32 = 64
        var groups = [gid_t](repeating: 0, count: Int(count))
        if getgrouplist(name, gid, &groups, &count) < 0 {
            groups = [gid_t](repeating: 0, count: Int(count))
            _ = getgrouplist(name, gid, &groups, &count)
        }
        return ProcessCredentials(uid: uid, gid: gid, supplementaryGroups: Array(groups.prefix(Int(max(0, count)))), name: name)
    }

    /// Looks an account up by UID.
    public static func lookup(uid: uid_t) -> ProcessCredentials? {
        var pwd = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 16 * 1024)
        guard getpwuid_r(uid, &pwd, &buffer, buffer.count, &result) == 0, result != nil,
              let namePtr = pwd.pw_name else { return nil }
        return lookup(user: String(cString: namePtr))
    }
}

/// Where a child's output goes.
public enum OutputDestination: Sendable {
    /// `/dev/null`.
    case discard
    /// Standard output and error share one pipe, read continuously on a dedicated thread.
    /// The handler receives the complete lines of each read, in order, without newlines;
    /// it must not block.
    case lines(@Sendable ([String]) -> Void)
    /// This process's standard input, output and error (an interactive tool).
    case inherit
    /// Standard output into an open file (the descriptor stays the caller's: a file the
    /// caller created itself, so the child never opens a path someone could have swapped);
    /// standard error as lines, as with ``lines(_:)``.
    case file(descriptor: Int32, errors: @Sendable ([String]) -> Void)

    /// The handler of the lines on the pipe, if output goes to one.
    var lineHandler: (@Sendable ([String]) -> Void)? {
        switch self {
        case .lines(let handler), .file(_, let handler): return handler
        case .discard, .inherit: return nil
        }
    }
}

/// What to run and how.
public struct SpawnConfiguration: Sendable {
    /// Absolute path of the executable.
    public var executable: String
    /// Arguments after `argv[0]`.
    public var arguments: [String]
    /// The complete environment of the child (nothing is inherited implicitly).
    public var environment: [String: String]
    /// The working directory, or `nil` for the parent's.
    public var workingDirectory: String?
    /// Where standard output and standard error go.
    public var output: OutputDestination
    /// Signal sent to the child by the kernel if this process dies (`PR_SET_PDEATHSIG`).
    public var deathSignal: Int32?
    /// Whether the child leads its own process group.
    public var newProcessGroup: Bool
    /// An account to switch to before exec (parent must be root).
    public var credentials: ProcessCredentials?

    public init(
        executable: String, arguments: [String] = [], environment: [String: String],
        workingDirectory: String? = nil, output: OutputDestination = .discard,
        deathSignal: Int32? = SIGKILL, newProcessGroup: Bool = true,
        credentials: ProcessCredentials? = nil
    ) {
        self.executable = executable
        self.arguments = arguments
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.output = output
        self.deathSignal = deathSignal
        self.newProcessGroup = newProcessGroup
        self.credentials = credentials
    }
}

/// Why a child could not be started.
public struct SpawnError: Error, Sendable, CustomStringConvertible {
    public var executable: String
    public var step: String
    public var errno: Int32

    public init(executable: String, step: String, errno: Int32) {
        self.executable = executable
        self.step = step
        self.errno = errno
    }

    public var description: String {
        "cannot start \(executable): \(step) failed: \(String(cString: strerror(errno)))"
    }
}

/// A child process this process started, owned until it is reaped.
///
/// Each child gets a dedicated thread that forks it and then blocks in `waitid(2)` until it
/// ends, so:
/// - `PR_SET_PDEATHSIG` is tied to a thread that lives exactly as long as the child (the
///   kernel sends the death signal when the *forking thread* exits, and Swift's pool threads
///   come and go);
/// - the child is reaped only after `signal` can no longer reach it: the reaper first waits
///   with `WNOWAIT`, marks the child gone under the lock, then reaps. A PID is therefore never
///   signalled after it might have been reused by an unrelated process.
public final class ChildProcess: Sendable {
    /// The child's PID (also its process group ID when it leads a new group).
    public let pid: pid_t
    /// The executable that was started.
    public let executable: String
    private let leadsGroup: Bool
    private let exited = Mutex(false)
    private let status = OneShot<TerminationStatus>()
    private let outputDone = OneShot<Void>()

    private init(pid: pid_t, executable: String, leadsGroup: Bool) {
        self.pid = pid
        self.executable = executable
        self.leadsGroup = leadsGroup
    }

    /// Starts a child process.
    public static func spawn(_ configuration: SpawnConfiguration) async throws(SpawnError) -> ChildProcess {
        // Output pipe, created close-on-exec; the child gets the write end as fd 1 and 2.
        var readEnd: Int32 = -1
        var writeEnd: Int32 = -1
        if configuration.output.lineHandler != nil {
            var fds: [Int32] = [-1, -1]
            guard amp_pipe_cloexec(&fds) == 0 else {
                throw SpawnError(executable: configuration.executable, step: "pipe2", errno: errno)
            }
            readEnd = fds[0]
            writeEnd = fds[1]
        }
        let spawned = OneShot<Result<ChildProcess, SpawnError>>()
        let config = configuration
        let (r, w) = (readEnd, writeEnd)
        do {
            try startDetachedThread(name: "amp-reaper") {
                let outcome = Self.forkExec(config, outputFD: w)
                if w >= 0 { close(w) }
                switch outcome {
                case .failure(let error):
                    if r >= 0 { close(r) }
                    spawned.fulfil(.failure(error))
                case .success(let pid):
                    let child = ChildProcess(pid: pid, executable: config.executable, leadsGroup: config.newProcessGroup)
                    var drainHere = false
                    if let handler = config.output.lineHandler {
                        do {
                            try startDetachedThread(name: "amp-output") {
                                LineReader.drain(fd: r, handler: handler)
                                close(r)
                                child.outputDone.fulfil(())
                            }
                        } catch {
                            drainHere = true
                        }
                    } else {
                        child.outputDone.fulfil(())
                    }
                    spawned.fulfil(.success(child))
                    if drainHere, let handler = config.output.lineHandler {
                        // No thread for the output: read it here until the child (and whatever
                        // shares its output) closes it, then reap. The exit is noticed late, but
                        // no output is lost and no pipe fills up.
                        LineReader.drain(fd: r, handler: handler)
                        close(r)
                        child.outputDone.fulfil(())
                    }
                    child.reap()  // Blocks this thread until the child is gone.
                }
            }
        } catch {
            if r >= 0 { close(r) }
            if w >= 0 { close(w) }
            throw SpawnError(executable: configuration.executable, step: "pthread_create", errno: error.errno)
        }
        return try await spawned.wait().get()
    }

    private static func forkExec(_ c: SpawnConfiguration, outputFD: Int32) -> Result<pid_t, SpawnError> {
        let argv = [c.executable] + c.arguments
        let envp = c.environment.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return withCStrings(argv) { argvPtr in
            withCStrings(envp) { envPtr in
                withOptionalCString(c.workingDirectory) { cwd in
                    let groups = c.credentials?.supplementaryGroups ?? []
                    return groups.withUnsafeBufferPointer { groupsPtr in
                        var options = amp_spawn_options()
                        options.path = nil
                        options.argv = argvPtr
                        options.envp = envPtr
                        options.cwd = cwd
                        if case .inherit = c.output {
                            options.stdin_fd = 0
                            options.stdout_fd = 1
                            options.stderr_fd = 2
                        } else if case .file(let descriptor, _) = c.output {
                            options.stdin_fd = -1
                            options.stdout_fd = descriptor
                            options.stderr_fd = outputFD
                        } else {
                            options.stdin_fd = -1
                            options.stdout_fd = outputFD
                            options.stderr_fd = outputFD
                        }
                        options.death_signal = c.deathSignal ?? 0
                        options.new_process_group = c.newProcessGroup ? 1 : 0
                        if let cred = c.credentials {
                            options.switch_user = 1
                            options.uid = cred.uid
                            options.gid = cred.gid
                            options.groups = groupsPtr.baseAddress
                            options.ngroups = groupsPtr.count
                        }
                        var pid: pid_t = 0
                        var step: UnsafePointer<CChar>?
                        let rc = c.executable.withCString { path in
                            options.path = path
                            return amp_spawn(&options, &pid, &step)
                        }
                        if rc != 0 {
                            let name = step.map { String(cString: $0) } ?? "spawn"
                            return .failure(SpawnError(executable: c.executable, step: name, errno: rc))
                        }
                        return .success(pid)
                    }
                }
            }
        }
    }

    private func reap() {
        var info = siginfo_t()
        // Wait without reaping: the PID stays ours (a zombie) while we mark the child gone.
        while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
        exited.withLock { $0 = true }
        var raw: Int32 = 0
        while waitpid(pid, &raw, 0) < 0 && errno == EINTR {}
        let result: TerminationStatus
        if (raw & 0x7f) == 0 {
            result = .exited((raw >> 8) & 0xff)
        } else {
            result = .signaled(raw & 0x7f)
        }
        status.fulfil(result)
    }

    /// Sends `signal` to the child (or, with `group`, to its whole process group) if it has
    /// not been reaped yet. Returns whether the signal was sent.
    @discardableResult
    public func signal(_ signal: Int32, group: Bool = false) -> Bool {
        exited.withLock { gone in
            guard !gone else { return false }
            if group && leadsGroup { return killpg(pid, signal) == 0 }
            return kill(pid, signal) == 0
        }
    }

    /// The exit status, once the child has been reaped.
    public var exitStatus: TerminationStatus? { status.value }

    /// Calls `body` with the exit status once the child has been reaped (at once if it was).
    /// `body` runs on the reaper thread and must not block.
    public func onExit(_ body: @escaping @Sendable (TerminationStatus) -> Void) { status.onFulfil(body) }

    /// Waits until the child has ended. Not cancellable (the child is still running).
    public func wait() async -> TerminationStatus { await status.wait() }

    /// Waits until the child has ended or `timeout` has passed; `nil` on timeout.
    /// Runs to its end even in a cancelled task, so it can bound waits during shutdown.
    public func wait(timeout: Duration) async -> TerminationStatus? {
        if let s = status.value { return s }
        let race = Race<TerminationStatus?>()
        status.onFulfil { race.resolve($0) }
        return await race.wait(orAfter: timeout, nil)
    }

    /// Waits (up to `timeout`) until the output pipe is closed by every process holding it,
    /// so that the last lines have reached the handler.
    public func waitForOutput(timeout: Duration) async {
        let race = Race<Void>()
        outputDone.onFulfil { race.resolve(()) }
        await race.wait(orAfter: timeout, ())
    }
}

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { buf in
        // swiftlint:disable:next force_unwrapping
        body(buf.baseAddress.unsafelyUnwrapped)
    }
}

private func withOptionalCString<R>(_ string: String?, _ body: (UnsafePointer<CChar>?) -> R) -> R {
    guard let string else { return body(nil) }
    return string.withCString { body($0) }
}

extension ChildProcess {
    /// Runs a program to its end and collects its output (standard output and error together,
    /// the last `limit` bytes of complete lines; only standard error when the configuration
    /// sends standard output to a ``OutputDestination/file(descriptor:errors:)``), for work
    /// done on a project's behalf (seed scripts, dumps): as `configuration.credentials` when given, in a process group of its own that
    /// is killed (SIGKILL) when `deadline` passes or the calling task is cancelled, so a script
    /// that never ends (`seed = ["/dev/zero"]`) cannot hold the caller.
    ///
    /// - Returns: the output; its status is nil when the deadline ended the program, and
    ///   128 + 9 when a cancellation did (check `Task.isCancelled`).
    /// - Throws: ``SpawnError`` when the program cannot be started.
    public static func run(
        _ configuration: SpawnConfiguration, deadline: ContinuousClock.Instant?, limit: Int = 1 << 20
    ) async throws(SpawnError) -> CommandOutput {
        let collected = Mutex<(lines: [String], bytes: Int)>(([], 0))
        var config = configuration
        config.newProcessGroup = true
        let collect: @Sendable ([String]) -> Void = { lines in
            collected.withLock { c in
                for line in lines {
                    c.lines.append(line)
                    c.bytes += line.utf8.count + 1
                }
                while c.bytes > limit, !c.lines.isEmpty { c.bytes -= c.lines.removeFirst().utf8.count + 1 }
            }
        }
        if case .file(let descriptor, _) = configuration.output {
            config.output = .file(descriptor: descriptor, errors: collect)
        } else {
            config.output = .lines(collect)
        }
        let child = try await spawn(config)
        let status: TerminationStatus? = await withTaskCancellationHandler {
            guard let deadline else { return await child.wait() }
            if let status = await child.wait(timeout: max(.zero, deadline - .now)) { return status }
            child.signal(SIGKILL, group: true)
            _ = await child.wait()
            return nil
        } onCancel: {
            child.signal(SIGKILL, group: true)
        }
        await child.waitForOutput(timeout: .seconds(2))
        let text = collected.withLock { $0.lines.joined(separator: "\n") }
        let code: Int32?
        switch status {
        case .exited(let c)?: code = c
        case .signaled(let s)?: code = 128 + s
        case nil: code = nil
        }
        return CommandOutput(status: code, text: text.trimmingWhitespace)
    }
}
