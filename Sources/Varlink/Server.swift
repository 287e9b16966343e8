#if canImport(Glibc)
import Glibc
#endif
import CSocket
import Synchronization
import ThreadSupport

/// Handles the calls of a service's own interfaces (not `org.varlink.service`).
///
/// Calls arrive checked: the method exists, the parameters match the IDL, `more` is set where
/// required and the peer is permitted. Return the final reply's parameters, or throw a
/// ``VarlinkError``; for a call with `more`, send intermediate replies through `stream` first.
/// A streaming handler that never ends is cancelled when the client goes away.
public protocol VarlinkHandler: Sendable {
    func handle(_ call: VarlinkCall, stream: VarlinkReplyStream) async throws(VarlinkError) -> JSONObject
}

/// Sends intermediate replies (`continues: true`) of a call made with `more`.
public struct VarlinkReplyStream: Sendable {
    let post: @Sendable (JSONObject) -> Void
    /// Whether the client asked for more than one reply.
    public let isStreaming: Bool

    public func send(_ parameters: JSONObject) {
        if isStreaming { post(parameters) }
    }
}

/// A server failure that prevents serving at all.
public struct VarlinkServerError: Error, Sendable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { "\(path): \(message)" }
}

/// A varlink server on a Unix socket.
///
/// One thread per connection does the I/O (poll on the socket and a wake-up eventfd), driving a
/// ``VarlinkConnectionStateMachine``; the calls themselves run as child tasks of ``run()``. A
/// slow, silent or malformed client therefore holds only its own thread and never blocks the
/// others or the service. Peers are identified by `SO_PEERCRED`; a UID not in `allowedUIDs` gets
/// `org.varlink.service.PermissionDenied` for every call but `org.varlink.service`'s own.
public final class VarlinkServer: @unchecked Sendable {
    public let path: String
    private let service: VarlinkServiceDescription
    private let handler: any VarlinkHandler
    private let allowedUIDs: Set<uid_t>
    private let maxConnections: Int
    private let maxMessageSize: Int
    private let log: @Sendable (String) -> Void
    /// For what an operator should see: refused connections, descriptor exhaustion.
    private let warn: @Sendable (String) -> Void
    private let listenFD: Int32
    private let stopFD: Int32
    private let live = Mutex(0)

    /// Binds and listens at `path` (a stale socket file there is replaced) with mode 0600.
    /// The directory must exist; keep it 0700.
    public init(
        path: String, service: VarlinkServiceDescription, handler: any VarlinkHandler,
        allowedUIDs: Set<uid_t> = [geteuid()], maxConnections: Int = 512, maxMessageSize: Int = 1 << 20,
        log: @escaping @Sendable (String) -> Void = { _ in },
        warn: (@Sendable (String) -> Void)? = nil
    ) throws(VarlinkServerError) {
        self.warn = warn ?? log
        self.path = path
        self.service = service
        self.handler = handler
        self.allowedUIDs = allowedUIDs
        self.maxConnections = maxConnections
        self.maxMessageSize = maxMessageSize
        self.log = log
        // A socket file left by a process that is gone: nobody answers on it.
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFSOCK {
            let probe = amp_unix_connect(path)
            if probe >= 0 {
                close(probe)
                throw VarlinkServerError(path: path, message: "another process already serves this socket")
            }
            unlink(path)
        }
        let fd = amp_unix_listen(path, 128, 0o600)
        guard fd >= 0 else {
            throw VarlinkServerError(path: path, message: "cannot listen: \(String(cString: strerror(-fd)))")
        }
        let efd = amp_eventfd()
        guard efd >= 0 else {
            close(fd)
            unlink(path)
            throw VarlinkServerError(path: path, message: "eventfd: \(String(cString: strerror(-efd)))")
        }
        listenFD = fd
        stopFD = efd
    }

    /// The number of open connections.
    public var connectionCount: Int { live.withLock { $0 } }

    /// The error a connection over the limit gets before it is closed (instead of a bare
    /// reset), with `limit` as its parameter.
    public static let tooManyConnectionsError = "org.varlink.service.TooManyConnections"

    /// Serves until the task is cancelled; then closes every connection, cancels running
    /// calls and removes the socket file.
    public func run() async {
        let (accepted, continuation) = AsyncStream<Int32>.makeStream()
        let listenFD = self.listenFD, stopFD = self.stopFD, maxConnections = self.maxConnections
        let warn = self.warn
        let refusal = VarlinkFramer.frame(VarlinkReply(
            parameters: ["limit": .int(Int64(maxConnections))], error: Self.tooManyConnectionsError).json)
        do {
            try startDetachedThread(name: "varlink-accept") {
                var backoff = AcceptBackoff()
                while true {
                    var r1: Int16 = 0, r2: Int16 = 0
                    _ = amp_poll2(listenFD, Int16(POLLIN), &r1, stopFD, Int16(POLLIN), &r2, backoff.pollTimeoutMs)
                    if r2 != 0 { break }
                    guard r1 != 0 else { continue }
                    let fd = amp_unix_accept(listenFD)
                    if fd < 0 {
                        // Out of descriptors or memory: the pending connection stays in the
                        // backlog, so waiting (not spinning) until some are freed is the fix.
                        if let message = backoff.failed(errno: -fd) { warn(message) }
                        if backoff.isBackingOff {
                            var ignored: Int16 = 0, stop: Int16 = 0
                            _ = amp_poll2(stopFD, Int16(POLLIN), &stop, -1, 0, &ignored, backoff.pollTimeoutMs)
                            if stop != 0 { break }
                        }
                        continue
                    }
                    backoff.succeeded()
                    let admitted = self.live.withLock { n -> Bool in
                        guard n < maxConnections else { return false }
                        n += 1
                        return true
                    }
                    if !admitted {
                        warn("refusing a connection: \(maxConnections) are open")
                        // Non-blocking socket: the reply fits in the socket buffer or is dropped.
                        _ = refusal.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT)) }
                        Glibc.shutdown(fd, Int32(SHUT_WR))
                        close(fd)
                        continue
                    }
                    continuation.yield(fd)
                }
                continuation.finish()
            }
        } catch {
            warn("varlink server cannot serve: \(error)")
            continuation.finish()
        }
        await withTaskCancellationHandler {
            await withDiscardingTaskGroup { group in
                for await fd in accepted {
                    group.addTask { await self.serve(fd) }
                }
                group.cancelAll()
            }
        } onCancel: {
            amp_eventfd_signal(stopFD)
        }
        close(listenFD)
        close(stopFD)
        unlink(path)
    }

    private func serve(_ fd: Int32) async {
        defer {
            // The last connection gone: give the memory of bursts (per-thread malloc arenas,
            // large message buffers) back to the system, so abuse does not ratchet RSS up.
            if live.withLock({ n -> Int in n -= 1; return n }) == 0 { amp_release_free_memory() }
        }
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        let permitted = amp_peer_credentials(fd, &pid, &uid, &gid) == 0 && allowedUIDs.contains(uid)
        guard let connection = Connection(
            fd: fd, machine: VarlinkConnectionStateMachine(service: service, permitted: permitted, maxMessageSize: maxMessageSize),
            log: log)
        else {
            close(fd)
            return
        }
        let handler = self.handler
        await withTaskCancellationHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await call in connection.calls {
                        let stream = VarlinkReplyStream(post: { connection.post(.replied(VarlinkReply(parameters: $0, continues: true))) }, isStreaming: call.more)
                        let final: VarlinkReply
                        do throws(VarlinkError) {
                            let parameters = try await handler.handle(call, stream: stream)
                            final = VarlinkReply(parameters: parameters)
                        } catch {
                            final = VarlinkReply(parameters: error.parameters, error: error.name)
                        }
                        connection.post(.replied(final))
                    }
                }
                await connection.closed.wait()
                group.cancelAll()
            }
        } onCancel: {
            connection.shutdown()
        }
    }
}

/// One connection's I/O thread and its state machine.
private final class Connection: @unchecked Sendable {
    let calls: AsyncStream<VarlinkCall>
    let closed = OneShot<Void>()
    private let callSink: AsyncStream<VarlinkCall>.Continuation
    private let fd: Int32
    private let wake: Int32
    /// Events for the I/O thread; `finished` once it ended (the eventfd is closed then, so
    /// it is signalled only under this lock).
    private let inbox = Mutex<(events: [VarlinkConnectionStateMachine.Event], stop: Bool, finished: Bool)>(([], false, false))
    // Owned by the I/O thread only.
    private var machine: VarlinkConnectionStateMachine
    private var outbox: [UInt8] = []
    private let log: @Sendable (String) -> Void
    static let maxOutbox = 16 << 20

    init?(fd: Int32, machine: VarlinkConnectionStateMachine, log: @escaping @Sendable (String) -> Void) {
        let wake = amp_eventfd()
        guard wake >= 0 else { return nil }
        self.fd = fd
        self.wake = wake
        self.machine = machine
        self.log = log
        (calls, callSink) = AsyncStream<VarlinkCall>.makeStream()
        do {
            try startDetachedThread(name: "varlink-conn") { self.loop() }
        } catch {
            log("closing a connection: \(error)")
            callSink.finish()
            close(wake)
            return nil
        }
    }

    /// Hands an event (a handler's reply) to the I/O thread.
    func post(_ event: VarlinkConnectionStateMachine.Event) {
        let wake = self.wake
        inbox.withLock {
            guard !$0.finished else { return }
            $0.events.append(event)
            amp_eventfd_signal(wake)
        }
    }

    /// Asks the I/O thread to close the connection.
    func shutdown() {
        let wake = self.wake
        inbox.withLock {
            guard !$0.finished else { return }
            $0.stop = true
            amp_eventfd_signal(wake)
        }
    }

    private func apply(_ actions: [VarlinkConnectionStateMachine.Action]) -> Bool {
        var open = true
        for a in actions {
            switch a {
            case .dispatch(let call): callSink.yield(call)
            case .send(let bytes): outbox += bytes
            case .close(let reason):
                log("closing a varlink connection: \(reason)")
                open = false
            }
        }
        return open
    }

    private func loop() {
        var buffer = [UInt8](repeating: 0, count: 65536)
        var open = true
        while open {
            var r1: Int16 = 0, r2: Int16 = 0
            let want = Int16(POLLIN) | (outbox.isEmpty ? 0 : Int16(POLLOUT))
            _ = amp_poll2(fd, want, &r1, wake, Int16(POLLIN), &r2, -1)
            if r2 != 0 {
                amp_eventfd_drain(wake)
                let (events, stop) = inbox.withLock { s -> ([VarlinkConnectionStateMachine.Event], Bool) in
                    defer { s.events.removeAll() }
                    return (s.events, s.stop)
                }
                if stop { break }
                for e in events where open { open = apply(machine.handle(e)) }
            }
            if open && r1 & Int16(POLLOUT) != 0 && !outbox.isEmpty {
                let n = outbox.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                if n > 0 {
                    outbox.removeFirst(n)
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    open = false
                }
            }
            if open && r1 & (Int16(POLLIN) | Int16(POLLHUP) | Int16(POLLERR)) != 0 {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n > 0 {
                    open = apply(machine.handle(.received(Array(buffer[0..<n]))))
                } else if n == 0 || (errno != EAGAIN && errno != EINTR) {
                    open = apply(machine.handle(.peerClosed))
                }
            }
            if outbox.count > Self.maxOutbox {
                log("closing a varlink connection: the client does not read its replies")
                open = false
            }
        }
        close(fd)
        let wake = self.wake
        inbox.withLock {
            $0.finished = true
            close(wake)
        }
        callSink.finish()
        closed.fulfil(())
    }
}

/// When `accept(2)` fails for lack of descriptors or memory, the accept loop waits before the
/// next try (10 ms doubling to 1 s) instead of spinning, and logs once per episode.
struct AcceptBackoff: Sendable, Equatable {
    private(set) var delayMs: Int32 = 0

    var isBackingOff: Bool { delayMs > 0 }
    /// The poll timeout for the listening socket: -1 (none) unless backing off.
    var pollTimeoutMs: Int32 { delayMs > 0 ? delayMs : -1 }

    /// Records a failed accept; returns a message to log at the start of an episode.
    mutating func failed(errno code: Int32) -> String? {
        switch code {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            let first = delayMs == 0
            delayMs = first ? 10 : min(delayMs * 2, 1000)
            return first ? "cannot accept connections: \(String(cString: strerror(code))); waiting for descriptors to be freed (raise LimitNOFILE= if this persists)" : nil
        default:
            // ECONNABORTED, EAGAIN, EINTR, EPROTO: that connection only; go on.
            return nil
        }
    }

    mutating func succeeded() { delayMs = 0 }
}
