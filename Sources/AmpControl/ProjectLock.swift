#if canImport(Glibc)
import Glibc
#endif
import AmpConfig
import AmpPostgres
import AmpProtocol
import ArgumentParser
import ChildProcess
import Synchronization
import SystemSupport
import Varlink

// The amp dir's lock as ampctl takes it (upgrade, push and pull work on a cluster that no ampd
// may start meanwhile), and what it does under it.

/// Whether the project's unit is active (or starting) under the user manager.
func serviceRunning(_ project: Project) async -> Bool {
    guard project.registered, findExecutable("systemctl") != nil else { return false }
    let (_, state) = await runCaptured("systemctl", ["--user", "is-active", project.unit])
    return ["active", "activating", "reloading"].contains(state.trimmingWhitespace)
}

/// The PID of the process holding the amp dir's lock (0 when it cannot be told), or nil when
/// nobody holds it.
func lockHolder(_ ampDir: AmpDirectory) -> Int32? {
    do {
        withExtendedLifetime(try AmpDirLock.acquire(ampDir.lockFile)) {}
        return nil
    } catch {
        if case .held(let pid) = error { return pid ?? 0 }
        return nil
    }
}

/// Runs `body` holding the amp dir's lock, so no ampd starts meanwhile; refuses when a
/// foreground `ampd run` holds it.
func withLock<T>(_ ampDir: AmpDirectory, _ body: () async throws(AmpctlError) -> T) async throws(AmpctlError) -> T {
    let lock: AmpDirLock
    do {
        lock = try AmpDirLock.acquire(ampDir.lockFile)
    } catch .held(let pid) {
        let who = pid.map { "ampd (PID \($0))" } ?? "another process"
        throw AmpctlError(.tempFail, "\(ampDir.path) is in use by \(who); stop it first (Ctrl-C in its terminal, or `kill \(pid.map(String.init) ?? "PID")`), then run this again")
    } catch {
        guard case .io(let message) = error else { throw AmpctlError(.failure, "cannot lock \(ampDir.lockFile); check the permissions of \(ampDir.path)") }
        throw AmpctlError(.cannotCreate, message)
    }
    let result = try await body()
    withExtendedLifetime(lock) {}
    return result
}

/// Finishes or rolls back an operation a crash cut short (``InterruptedOperations``), as the
/// next start of ampd would, when no ampd holds the lock (a running one did it at its start).
func recoverInterrupted(_ ampDir: AmpDirectory) async throws(AmpctlError) {
    guard !InterruptedOperations.scan(dataDirectory: ampDir.metadb).isEmpty, lockHolder(ampDir) == nil else { return }
    let report = try await withLock(ampDir) { () async throws(AmpctlError) -> InterruptedOperations.Report in
        await InterruptedOperations.recover(
            dataDirectory: ampDir.metadb, rollbackDirectory: ampDir.rollbackDirectory, stopTimeout: .seconds(30), logger: PostgresBuilder.silentLogger)
    }
    for line in report.done { err("ampctl: \(line)") }
    for line in report.left { err("ampctl: left for you: \(line)") }
}

/// Runs `body` with a private 0700 socket directory that is removed afterwards.
func inSocketDirectory<T>(_ directory: String, _ body: () async throws(UpgradeError) -> T) async throws(AmpctlError) -> T {
    do {
        try makeDirectories(directory)
    } catch {
        throw AmpctlError(.cannotCreate, "\(error); set XDG_RUNTIME_DIR to a directory of yours")
    }
    defer { try? removeTree(directory) }
    do throws(UpgradeError) {
        return try await body()
    } catch {
        throw AmpctlError(error)
    }
}

/// Starts the cluster with `binaries` on a private socket for `body` (no varlink, no unit),
/// then stops it (``PrivateServer``); the caller holds the lock (``withLock(_:_:)``).
func withTemporaryServer<T>(
    _ dataDirectory: String, binaries: PostgresBinaries, version: PostgresVersion, socketDirectory: String,
    describing what: String, _ body: (PostgresHandle) async -> T
) async throws(AmpctlError) -> T {
    do throws(PrivateServer.Failure) {
        return try await PrivateServer.with(dataDirectory: dataDirectory, binaries: binaries, version: version, socketDirectory: socketDirectory, body)
    } catch {
        switch error {
        case .socketDirectory(let reason):
            throw AmpctlError(.cannotCreate, "cannot make a socket directory for \(what): \(reason); set XDG_RUNTIME_DIR to a directory of yours")
        case .start(let failure):
            throw AmpctlError(.failure, "\(what) did not start: \(failure.message)")
        }
    }
}
