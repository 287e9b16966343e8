#if canImport(Glibc)
import Glibc
#endif
import CSocket
import Synchronization
import Testing
import ThreadSupport
@testable import Varlink

/// A handler for the example interface: Echo answers, Watch streams 3 replies (or forever with
/// `forever`), Items counts.
struct ExampleHandler: VarlinkHandler {
    func handle(_ call: VarlinkCall, stream: VarlinkReplyStream) async throws(VarlinkError) -> JSONObject {
        switch call.methodName {
        case "Echo":
            if call.parameters["text"] == .string("fail") { throw VarlinkError("org.example.test.Broken", ["why": .string("asked to")]) }
            if call.parameters["text"] == .string("slow") { try? await Task.sleep(for: .milliseconds(300)) }
            return ["text": call.parameters["text"] ?? .null]
        case "Watch":
            for n in 1...3 {
                stream.send(["n": .int(Int64(n))])
                try? await Task.sleep(for: .milliseconds(10))
            }
            return ["n": .int(4)]
        default:
            return [:]
        }
    }
}

/// A server on a fresh socket, run as a child task of the test; cancelled and awaited at the end.
func withServer(allowedUIDs: Set<uid_t> = [geteuid()], maxMessageSize: Int = 1 << 20,
                _ body: (String) async throws -> Void) async throws {
    var template = Array("/tmp/varlink-test.XXXXXX".utf8CString)
    let dir = template.withUnsafeMutableBufferPointer { b in b.baseAddress.flatMap { mkdtemp($0) } }.map { String(cString: $0) } ?? "/tmp"
    let path = dir + "/io.example"
    let service = VarlinkServiceDescription(
        vendor: "amp", product: "test", version: "1", url: "https://example.org",
        interfaces: [try VarlinkInterface(parsing: exampleIDL)], moreRequired: ["org.example.test.Watch"])
    let server = try VarlinkServer(path: path, service: service, handler: ExampleHandler(), allowedUIDs: allowedUIDs, maxMessageSize: maxMessageSize)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { await server.run() }
        defer { group.cancelAll() }
        try await body(path)
    }
    #expect(access(path, F_OK) != 0, "the socket file is removed when the server stops")
    rmdir(dir)
}

/// A raw connection for malformed input.
/// Blocking reads run on threads of their own (runOnThread): the cooperative pool is tiny and
/// the server's tasks need it.
final class RawConnection: @unchecked Sendable {
    let fd: Int32
    init(_ path: String) throws {
        fd = amp_unix_connect(path)
        if fd < 0 { throw VarlinkClientError(code: .io, message: "connect \(-fd)") }
    }
    deinit { close(fd) }
    func write(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    /// Whether the server closed the connection within `timeoutMs` (reads until EOF).
    func closedByServer(timeoutMs: Int32 = 2000) async -> Bool {
        await runOnThread { self.closedByServerBlocking(timeoutMs: timeoutMs) }
    }

    private func closedByServerBlocking(timeoutMs: Int32) -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            var r: Int16 = 0
            if amp_poll2(fd, Int16(POLLIN), &r, -1, 0, nil, timeoutMs) == 0 { return false }
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n <= 0 { return true }
        }
    }
}

@Suite("varlink server and client (real sockets)")
struct SocketTests {
    @Test func callsAndIntrospection() async throws {
        try await withServer { path in
            let c = try VarlinkClient.connect(path: path)
            #expect(try await c.call("org.example.test.Echo", ["text": .string("hello")])["text"] == .string("hello"))
            let info = try await c.call("org.varlink.service.GetInfo")
            #expect(info["product"] == .string("test"))
            await #expect(throws: VarlinkError("org.example.test.Broken", ["why": .string("asked to")])) {
                try await c.call("org.example.test.Echo", ["text": .string("fail")])
            }
            await #expect(throws: VarlinkError.invalidParameter("text")) { try await c.call("org.example.test.Echo", ["text": .int(1)]) }
            await #expect(throws: VarlinkError.expectedMore) { try await c.call("org.example.test.Watch") }
            var seen: [Int64] = []
            for try await r in c.stream("org.example.test.Watch") { seen.append(r["n"]?.intValue ?? -1) }
            #expect(seen == [1, 2, 3, 4])
            #expect(try await c.call("org.example.test.Echo", ["text": .string("after")])["text"] == .string("after"))
        }
    }

    @Test func permissionDeniedForOtherUIDs() async throws {
        try await withServer(allowedUIDs: []) { path in
            let c = try VarlinkClient.connect(path: path)
            await #expect(throws: VarlinkError.permissionDenied) { try await c.call("org.example.test.Echo", ["text": .string("x")]) }
            #expect(try await c.call("org.varlink.service.GetInfo")["vendor"] == .string("amp"))
        }
        var st = stat()
        try await withServer { path in
            #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o600, "socket mode 0600")
        }
    }

    @Test func malformedClientsAreClosedAndOthersServed() async throws {
        try await withServer(maxMessageSize: 4096) { path in
            let good = try VarlinkClient.connect(path: path)
            let silent = try RawConnection(path)  // connects and sends nothing
            let noNul = try RawConnection(path)
            noNul.write(Array(#"{"method":"org.varlink.service.GetInfo"}"#.utf8))  // never terminated
            for bad in ["not json", #"{"method":"org.example.test.Echo","bogus":true}"#, #"{"method":"org.example.test.Echo","parameters":"x"}"#] {
                let r = try RawConnection(path)
                r.write(Array(bad.utf8) + [0])
                #expect(await r.closedByServer(), "closed after \(bad)")
            }
            let big = try RawConnection(path)
            big.write(Array(repeating: UInt8(ascii: "a"), count: 5000))
            #expect(await big.closedByServer(), "closed after an oversize message")
            #expect(!(await noNul.closedByServer(timeoutMs: 200)), "an unterminated message just waits")
            #expect(try await good.call("org.example.test.Echo", ["text": .string("still here")])["text"] == .string("still here"))
            _ = silent
        }
    }

    @Test func manyConcurrentClients() async throws {
        try await withServer { path in
            let failures = Counter()
            await withTaskGroup(of: Void.self) { group in
                for i in 0..<200 {
                    group.addTask {
                        do {
                            let c = try VarlinkClient.connect(path: path)
                            let text = i % 20 == 0 ? "slow" : "c\(i)"
                            let r = try await c.call("org.example.test.Echo", ["text": .string(text)])
                            if r["text"] != .string(text) { failures.add() }
                        } catch {
                            failures.add()
                        }
                    }
                }
            }
            #expect(failures.value == 0)
        }
    }

    @Test func pipelinedCallsAnswerInOrder() async throws {
        try await withServer { path in
            let r = try RawConnection(path)
            r.write(Array(#"{"method":"org.example.test.Echo","parameters":{"text":"slow"}}"#.utf8) + [0]
                + Array(#"{"method":"org.example.test.Echo","parameters":{"text":"fast"}}"#.utf8) + [0])
            let fd = r.fd
            let messages = await runOnThread { () -> [[UInt8]] in
                var framer = VarlinkFramer(maxMessageSize: 1 << 20)
                var messages: [[UInt8]] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while messages.count < 2 {
                    var rev: Int16 = 0
                    guard amp_poll2(fd, Int16(POLLIN), &rev, -1, 0, nil, 5000) > 0 else { break }
                    let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                    if n <= 0 { break }
                    messages += (try? framer.feed(buffer[0..<n])) ?? []
                }
                return messages
            }
            let texts = try messages.map { try VarlinkReply.decode(try JSONParser.parse($0)).parameters["text"] }
            #expect(texts == [.string("slow"), .string("fast")])
        }
    }
}

final class Counter: Sendable {
    private let count = Mutex(0)
    func add() { count.withLock { $0 += 1 } }
    var value: Int { count.withLock { $0 } }
}
