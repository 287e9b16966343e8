#if canImport(Glibc)
import Glibc
#endif
import Subprocess
import SystemPackage
import SystemSupport

/// What a short-lived command printed and how it ended.
public struct CommandOutput: Sendable, Equatable {
    /// Its exit code, 128 + the signal that ended it, or nil when it was stopped at the timeout.
    public var status: Int32?
    /// Standard output and standard error together (at most the limit given), trimmed.
    public var text: String

    /// Whether it exited with 0.
    public var succeeded: Bool { status == 0 }
}

/// Runs a short-lived program to its end through swift-subprocess and collects its output:
/// for `postgres --version`, `--describe-config`, `systemctl`, `journalctl` and the like, which
/// need none of what ``ChildProcess`` does for the postmaster (a death signal, a process group,
/// a user switch). Stopped (SIGKILL) after `timeout`, when one is given; run in
/// `workingDirectory` when one is given.
///
/// - Throws: ``SpawnError`` when the program cannot be started.
public func runCommand(
    _ path: String, _ arguments: [String], environment: [String: String], workingDirectory: String? = nil,
    timeout: Duration? = .seconds(30), limit: Int = 1 << 20
) async throws(SpawnError) -> CommandOutput {
    let configuration = Configuration(
        executable: .path(FilePath(path)), arguments: Arguments(arguments), environment: .custom(subprocessEnvironment(environment)),
        workingDirectory: workingDirectory.map { FilePath($0) })
    do {
        return try await withThrowingTaskGroup(of: CommandOutput?.self) { group in
            group.addTask {
                let result = try await Subprocess.run(configuration, output: .string(limit: limit), error: .combinedWithOutput)
                switch result.terminationStatus {
                case .exited(let code): return CommandOutput(status: code, text: result.standardOutput.trimmingWhitespace)
                case .signaled(let signal): return CommandOutput(status: 128 + signal, text: result.standardOutput.trimmingWhitespace)
                }
            }
            if let timeout {
                group.addTask {
                    try await Task.sleep(for: timeout)
                    return nil
                }
            }
            let first = try await group.next() ?? nil
            group.cancelAll()
            return first ?? CommandOutput(status: nil, text: "no answer within \(timeout.map { "\($0)" } ?? "its time")")
        }
    } catch let error as SubprocessError {
        let step = error.code == .outputLimitExceeded ? "reading more than \(limit) bytes of output" : "spawn"
        throw SpawnError(executable: path, step: step, errno: error.underlyingError?.rawValue ?? EIO)
    } catch {
        throw SpawnError(executable: path, step: "run", errno: EIO)
    }
}

/// Runs a program to its end on this process's standard input, output and error (the
/// terminal), and returns its exit code (128 + the signal that ended it).
///
/// - Throws: ``SpawnError`` when the program cannot be started.
public func runInteractive(_ path: String, _ arguments: [String], environment: [String: String]) async throws(SpawnError) -> Int32 {
    do {
        let result = try await Subprocess.run(
            .path(FilePath(path)), arguments: Arguments(arguments), environment: .custom(subprocessEnvironment(environment)),
            input: .fileDescriptor(.standardInput, closeAfterSpawningProcess: false),
            output: .fileDescriptor(.standardOutput, closeAfterSpawningProcess: false),
            error: .fileDescriptor(.standardError, closeAfterSpawningProcess: false))
        switch result.terminationStatus {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    } catch let error as SubprocessError {
        throw SpawnError(executable: path, step: "spawn", errno: error.underlyingError?.rawValue ?? EIO)
    } catch {
        throw SpawnError(executable: path, step: "run", errno: EIO)
    }
}

private func subprocessEnvironment(_ environment: [String: String]) -> [Environment.Key: String] {
    var variables: [Environment.Key: String] = [:]
    for (k, v) in environment { variables[Environment.Key(stringLiteral: k)] = v }
    return variables
}
