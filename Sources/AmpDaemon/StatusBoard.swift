#if canImport(Glibc)
import Glibc
#endif
import AmpPostgres
import AmpProtocol
import Synchronization
import SystemSupport

/// The service's status as `io.amp.Metadb` reports it, with change notification for
/// `WatchStatus`.
final class StatusBoard: Sendable {
    private struct State {
        var status: MetadbStatus
        var handle: PostgresHandle?
        var readySince: ContinuousClock.Instant?
        var watchers: [Int: AsyncStream<MetadbStatus>.Continuation] = [:]
        var nextWatcher = 0
    }

    private let state: Mutex<State>

    init(_ initial: MetadbStatus) { state = Mutex(State(status: initial)) }

    /// The status with the uptime filled in.
    var status: MetadbStatus {
        state.withLock { s in
            var status = s.status
            if let since = s.readySince {
                let d = ContinuousClock.now - since
                status.uptimeSeconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            }
            return status
        }
    }

    /// The running server's handle, once ready (nil while starting, stopping or failed).
    var handle: PostgresHandle? { state.withLock { $0.status.state == .ready || $0.status.state == .external ? $0.handle : nil } }

    /// Marks an external server as answering.
    func external(_ handle: PostgresHandle, server: ExternalServer) {
        serve(handle) {
            $0.state = .external
            $0.phase = ServicePhase.external(server: server.display).statusText
            $0.version = handle.serverVersion
            $0.url = handle.url
            $0.server = server.display
            $0.tls = server.usesTLS
            $0.healthy = true
        }
    }

    /// Keeps the handle of a server that answers from now on, and sets its fields.
    private func serve(_ handle: PostgresHandle, _ fields: (inout MetadbStatus) -> Void) {
        state.withLock {
            $0.handle = handle
            $0.readySince = ContinuousClock.now
        }
        update(fields)
    }

    /// Changes the status and tells the watchers when it changed.
    func update(_ change: (inout MetadbStatus) -> Void) {
        let (changed, watchers, snapshot) = state.withLock { s -> (Bool, [AsyncStream<MetadbStatus>.Continuation], MetadbStatus) in
            let before = s.status
            change(&s.status)
            return (before != s.status, Array(s.watchers.values), s.status)
        }
        if changed { for w in watchers { w.yield(snapshot) } }
    }

    /// Marks the server ready.
    func ready(_ handle: PostgresHandle) {
        serve(handle) {
            $0.state = .ready
            $0.phase = ServicePhase.ready(url: handle.url).statusText
            $0.postmasterPID = Int(handle.pid)
            $0.version = handle.serverVersion
            $0.socketDir = handle.socketDirectory
            $0.url = handle.url
            $0.healthy = true
        }
    }

    /// The current status, then every change, until the consumer stops.
    func watch() -> AsyncStream<MetadbStatus> {
        let (stream, continuation) = AsyncStream<MetadbStatus>.makeStream(bufferingPolicy: .bufferingNewest(16))
        let id = state.withLock { s -> Int in
            s.nextWatcher += 1
            s.watchers[s.nextWatcher] = continuation
            return s.nextWatcher
        }
        continuation.onTermination = { [weak self] _ in
            _ = self?.state.withLock { $0.watchers.removeValue(forKey: id) }
        }
        continuation.yield(status)
        return stream
    }

    /// Ends every watch (at shutdown).
    func finish() {
        let watchers = state.withLock { s -> [AsyncStream<MetadbStatus>.Continuation] in
            defer { s.watchers.removeAll() }
            return Array(s.watchers.values)
        }
        for w in watchers { w.finish() }
    }
}
