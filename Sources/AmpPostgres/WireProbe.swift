#if canImport(Glibc)
import Glibc
#endif
import CSocket

/// A minimal PostgreSQL frontend/backend protocol (3.0) client over a Unix socket, for the
/// two things every start and every health check needs: "does the server accept a
/// connection" and "what does `SHOW server_version` say". It speaks only what a trust-auth
/// cluster needs (StartupMessage, AuthenticationOk, simple Query, Terminate) and answers in
/// about a millisecond without loading libpq (whose TLS and GSSAPI dependencies cost every
/// start several milliseconds and megabytes).
///
/// The protocol itself is ``WireProbeSession`` (pure: bytes in, bytes to send and an outcome
/// out, unit-tested); this type only moves bytes over the socket within the deadline.
///
/// See <https://www.postgresql.org/docs/15/protocol-flow.html> and
/// <https://www.postgresql.org/docs/15/protocol-message-formats.html>.
public enum WireProbe {
    /// What the probe found.
    public enum Outcome: Sendable, Equatable {
        /// Connected, authenticated, and (when a query was given) its first value.
        case ok(String?)
        /// The server answered but refused (SQLSTATE and message), e.g. 57P03 while starting
        /// up, shutting down or recovering.
        case rejected(sqlState: String, message: String)
        /// The server asks for a password or another authentication method.
        case authenticationRequired
        /// No answer: nothing listens, or the connection failed (errno text), or the answer
        /// broke the protocol.
        case noResponse(String)
        /// No complete answer within the timeout.
        case timedOut
    }

    /// Connects to `socketPath` (the `.s.PGSQL.PORT` file), logs in as `user` to `database`,
    /// runs `query` when given, and disconnects. Blocking: call it from a thread of its own.
    public static func probe(socketPath: String, user: String, database: String, query: String?, timeout: Duration) -> Outcome {
        let deadline = ContinuousClock.now + timeout
        let fd = amp_unix_connect(socketPath)
        guard fd >= 0 else { return .noResponse(String(cString: strerror(-fd))) }
        defer { close(fd) }
        var session = WireProbeSession(user: user, database: database, query: query)
        guard send(fd, session.startup) else { return .noResponse("write failed") }
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { return .timedOut }
            let ms = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            var revents: Int16 = 0
            if amp_poll2(fd, Int16(POLLIN), &revents, -1, 0, nil, ms) == 0 { continue }
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && (errno == EINTR || errno == EAGAIN) { continue }
            guard n > 0 else { return .noResponse("connection closed") }
            let step = session.received(chunk[0..<n])
            if !step.send.isEmpty, !send(fd, step.send), step.outcome == nil { return .noResponse("write failed") }
            if let outcome = step.outcome { return outcome }
        }
    }

    private static func send(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress?.advanced(by: offset), $0.count - offset, Int32(MSG_NOSIGNAL)) }
            if n < 0 { if errno == EINTR { continue }; return false }
            offset += n
        }
        return true
    }
}

/// The probe's side of the protocol, without I/O: feed it what the server sent, send what it
/// returns, stop at its outcome.
public struct WireProbeSession: Sendable {
    /// The largest message accepted (a health check expects tiny ones).
    public static let maximumMessageLength = 1 << 24

    /// What to do after some bytes arrived.
    public struct Step: Sendable, Equatable {
        /// Bytes to send now (the query, or Terminate).
        public var send: [UInt8] = []
        /// The outcome, once known; then the session is over.
        public var outcome: WireProbe.Outcome?

        public init(send: [UInt8] = [], outcome: WireProbe.Outcome? = nil) {
            self.send = send
            self.outcome = outcome
        }
    }

    /// The StartupMessage to send first: length, protocol 3.0, key/value pairs, a final NUL.
    public let startup: [UInt8]
    private let query: String?
    private var buffer: [UInt8] = []
    private var queried = false
    private var answer: String?
    private var finished = false

    public init(user: String, database: String, query: String?) {
        var body = Self.int32(196_608)
        for (k, v) in [("user", user), ("database", database), ("application_name", "ampd")] {
            body += Array(k.utf8) + [0] + Array(v.utf8) + [0]
        }
        body.append(0)
        startup = Self.int32(Int32(clamping: body.count + 4)) + body
        self.query = query
    }

    /// Consumes `bytes`; returns what to send and, when the exchange is over, its outcome.
    public mutating func received(_ bytes: some Collection<UInt8>) -> Step {
        guard !finished else { return Step() }
        buffer += bytes
        var step = Step()
        while let message = nextMessage(&step) {
            if let outcome = handle(message.type, message.payload, &step) {
                finished = true
                step.outcome = outcome
                return step
            }
        }
        if step.outcome != nil { finished = true }
        return step
    }

    /// The next whole message, or nil when more bytes are needed (or the stream is broken:
    /// then `step.outcome` says so).
    private mutating func nextMessage(_ step: inout Step) -> (type: UInt8, payload: [UInt8])? {
        guard step.outcome == nil, buffer.count >= 5 else { return nil }
        let length = Int(Self.readInt32(buffer, 1))
        guard length >= 4, length <= Self.maximumMessageLength else {
            step.outcome = .noResponse("malformed answer: message length \(length)")
            return nil
        }
        guard buffer.count >= 1 + length else { return nil }
        let message = (buffer[0], Array(buffer[5..<(1 + length)]))
        buffer.removeFirst(1 + length)
        return message
    }

    private mutating func handle(_ type: UInt8, _ payload: [UInt8], _ step: inout Step) -> WireProbe.Outcome? {
        switch type {
        case UInt8(ascii: "R"):
            guard payload.count >= 4 else { return .noResponse("malformed answer: short authentication message") }
            return Self.readInt32(payload, 0) == 0 ? nil : .authenticationRequired
        case UInt8(ascii: "E"):
            let fields = Self.errorFields(payload)
            return .rejected(sqlState: fields["C"] ?? "", message: fields["M"] ?? "")
        case UInt8(ascii: "D"):
            // DataRow: column count, then length-prefixed values; the first value counts.
            if answer == nil, payload.count >= 6, Self.readInt16(payload, 0) >= 1 {
                let length = Int(Self.readInt32(payload, 2))
                if length >= 0, payload.count >= 6 + length {
                    answer = String(decoding: payload[6..<(6 + length)], as: UTF8.self)
                }
            }
            return nil
        case UInt8(ascii: "Z"):
            // ReadyForQuery: after the login, and again after the query.
            if let query, !queried {
                queried = true
                let q = Array(query.utf8) + [0]
                step.send += [UInt8(ascii: "Q")] + Self.int32(Int32(clamping: q.count + 4)) + q
                return nil
            }
            step.send += [UInt8(ascii: "X")] + Self.int32(4)
            return .ok(answer)
        default:
            return nil  // ParameterStatus, BackendKeyData, RowDescription, CommandComplete, notices
        }
    }

    static func int32(_ v: Int32) -> [UInt8] {
        let u = UInt32(bitPattern: v)
        return [UInt8(u >> 24), UInt8((u >> 16) & 0xff), UInt8((u >> 8) & 0xff), UInt8(u & 0xff)]
    }

    static func readInt32(_ b: [UInt8], _ at: Int) -> Int32 {
        Int32(bitPattern: UInt32(b[at]) << 24 | UInt32(b[at + 1]) << 16 | UInt32(b[at + 2]) << 8 | UInt32(b[at + 3]))
    }

    static func readInt16(_ b: [UInt8], _ at: Int) -> Int16 {
        Int16(bitPattern: UInt16(b[at]) << 8 | UInt16(b[at + 1]))
    }

    /// The fields of an ErrorResponse: code letter → text.
    static func errorFields(_ payload: [UInt8]) -> [String: String] {
        var fields: [String: String] = [:]
        var i = 0
        while i < payload.count, payload[i] != 0 {
            let code = String(UnicodeScalar(payload[i]))
            var j = i + 1
            while j < payload.count, payload[j] != 0 { j += 1 }
            fields[code] = String(decoding: payload[(i + 1)..<j], as: UTF8.self)
            i = j + 1
        }
        return fields
    }
}
