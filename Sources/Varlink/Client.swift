#if canImport(Glibc)
import Glibc
#endif
import CSocket
import Synchronization
import ThreadSupport

/// Why a client call did not get a reply.
public struct VarlinkClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        /// Nothing listens at the address (ENOENT, ECONNREFUSED).
        case notRunning
        /// The socket exists but we may not use it (EACCES, EPERM).
        case accessDenied
        /// Connecting, writing or reading failed otherwise, or the service closed the connection.
        case io
        /// The reply broke the protocol.
        case protocolViolation
        /// No reply within the timeout.
        case timedOut
        /// The address is not `unix:PATH`.
        case badAddress
        /// The process at the other end is not one of the users the caller trusts
        /// (`SO_PEERCRED`): another user's server in the socket's place.
        case untrustedPeer
    }

    public var code: Code
    public var message: String
    public var description: String { message }
}

/// A varlink address: `unix:/path/to/socket` (parameters after `;` are ignored).
public func parseVarlinkAddress(_ address: String) -> String? {
    guard address.hasPrefix("unix:") else { return nil }
    let rest = address.dropFirst(5)
    let path = rest.split(separator: ";", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
    return path.hasPrefix("/") ? path : nil
}

/// An async varlink client over a Unix socket. Calls on one client run one at a time.
///
/// The blocking socket I/O runs on a thread of its own per call, never on the Swift
/// concurrency pool.
public final class VarlinkClient: Sendable {
    public let path: String
    private let fd: Int32
    private let lock = Mutex(())
    private let maxMessageSize: Int

    private init(path: String, fd: Int32, maxMessageSize: Int) {
        self.path = path
        self.fd = fd
        self.maxMessageSize = maxMessageSize
    }

    deinit { close(fd) }

    /// Connects to the socket at `path`. With `trustedUIDs`, the peer's user (`SO_PEERCRED`, as
    /// the kernel reports it, not as the peer says) must be one of them, else nothing is sent
    /// and ``VarlinkClientError/Code/untrustedPeer`` is thrown.
    public static func connect(path: String, maxMessageSize: Int = 16 << 20, trustedUIDs: Set<uid_t>? = nil) throws(VarlinkClientError) -> VarlinkClient {
        let fd = amp_unix_connect(path)
        guard fd >= 0 else {
            let e = -fd
            let code: VarlinkClientError.Code = (e == ENOENT || e == ECONNREFUSED) ? .notRunning : (e == EACCES || e == EPERM) ? .accessDenied : .io
            throw VarlinkClientError(code: code, message: "\(path): \(String(cString: strerror(e)))")
        }
        if let trustedUIDs {
            var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
            let rc = amp_peer_credentials(fd, &pid, &uid, &gid)
            guard rc == 0, trustedUIDs.contains(uid) else {
                close(fd)
                let who = rc == 0 ? "UID \(uid) (PID \(pid))" : "an unknown user (\(String(cString: strerror(-rc))))"
                throw VarlinkClientError(
                    code: .untrustedPeer,
                    message: "\(path) is served by \(who), not by you (UID \(geteuid())); not trusting it: find out who made it, remove it, and start your own service")
            }
        }
        return VarlinkClient(path: path, fd: fd, maxMessageSize: maxMessageSize)
    }

    /// Calls `method` and returns the reply's parameters; an error reply throws ``VarlinkError``,
    /// anything else ``VarlinkClientError``.
    public func call(_ method: String, _ parameters: JSONObject = [:], timeout: Duration = .seconds(30)) async throws -> JSONObject {
        let result = await runOnThread { () -> Result<JSONObject, any Error> in
            self.lock.withLock { _ in
                do {
                    try self.send(VarlinkCall(method: method, parameters: parameters))
                    var framer = VarlinkFramer(maxMessageSize: self.maxMessageSize)
                    let reply = try self.receive(&framer, timeout: timeout)
                    if let error = reply.error { return .failure(VarlinkError(error, reply.parameters)) }
                    return .success(reply.parameters)
                } catch {
                    return .failure(error)
                }
            }
        }
        return try result.get()
    }

    /// Sends a `oneway` call (no reply).
    public func callOneway(_ method: String, _ parameters: JSONObject = [:]) throws(VarlinkClientError) {
        try lock.withLock { _ throws(VarlinkClientError) in try send(VarlinkCall(method: method, parameters: parameters, oneway: true)) }
    }

    /// Calls `method` with `more`; yields each reply's parameters until the last, or throws.
    /// Ending the iteration early closes nothing but stops reading; drop the client after.
    public func stream(_ method: String, _ parameters: JSONObject = [:]) -> AsyncThrowingStream<JSONObject, any Error> {
        let (stream, continuation) = AsyncThrowingStream<JSONObject, any Error>.makeStream()
        // The closure holds the client, so its descriptor stays open (and is never one that was
        // closed and reused by then) until the stream has terminated.
        continuation.onTermination = { [self] termination in
            if case .cancelled = termination { Glibc.shutdown(self.fd, Int32(SHUT_RDWR)) }
        }
        do {
            try startDetachedThread(name: "varlink-client") {
                self.lock.withLock { _ in
                    do {
                        try self.send(VarlinkCall(method: method, parameters: parameters, more: true))
                        var framer = VarlinkFramer(maxMessageSize: self.maxMessageSize)
                        while true {
                            let reply = try self.receive(&framer, timeout: nil)
                            if let error = reply.error { throw VarlinkError(error, reply.parameters) }
                            continuation.yield(reply.parameters)
                            if !reply.continues { break }
                        }
                        continuation.finish()
                    } catch {
                        continuation.finish(throwing: error)
                    }
                }
            }
        } catch {
            continuation.finish(throwing: VarlinkClientError(code: .io, message: "\(error)"))
        }
        return stream
    }

    private func send(_ call: VarlinkCall) throws(VarlinkClientError) {
        var bytes = VarlinkFramer.frame(call.json)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.send(fd, $0.baseAddress?.advanced(by: offset), $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 {
                if errno == EINTR { continue }
                throw VarlinkClientError(code: .io, message: "\(path): write: \(String(cString: strerror(errno)))")
            }
            offset += n
        }
    }

    private let pending = Mutex<[[UInt8]]>([])

    /// Reads until one whole message, decodes it as a reply.
    private func receive(_ framer: inout VarlinkFramer, timeout: Duration?) throws(VarlinkClientError) -> VarlinkReply {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            if let message = pending.withLock({ $0.isEmpty ? nil : $0.removeFirst() }) {
                do {
                    return try VarlinkReply.decode(try JSONParser.parse(message))
                } catch let e as JSONParseError {
                    throw VarlinkClientError(code: .protocolViolation, message: "\(path): \(e)")
                } catch {
                    throw VarlinkClientError(code: .protocolViolation, message: "\(path): \(error)")
                }
            }
            var waitMs: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                guard left > .zero else { throw VarlinkClientError(code: .timedOut, message: "\(path): no reply within \(timeout ?? .zero)") }
                waitMs = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            }
            var revents: Int16 = 0
            let r = amp_poll2(fd, Int16(POLLIN), &revents, -1, 0, nil, waitMs)
            if r == 0 { continue }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n == 0 { throw VarlinkClientError(code: .io, message: "\(path): the service closed the connection") }
            if n < 0 {
                if errno == EINTR || errno == EAGAIN { continue }
                throw VarlinkClientError(code: .io, message: "\(path): read: \(String(cString: strerror(errno)))")
            }
            do {
                let messages = try framer.feed(buffer[0..<n])
                pending.withLock { $0 += messages }
            } catch {
                throw VarlinkClientError(code: .protocolViolation, message: "\(path): \(error.message)")
            }
        }
    }
}
