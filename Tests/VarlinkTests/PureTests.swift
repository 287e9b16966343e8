#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Varlink

@Suite("JSON (pure)")
struct JSONTests {
    @Test func roundTrips() throws {
        let text = #"{"a":1,"b":-2.5,"c":"x\"\n\u0001é😀","d":[true,false,null],"e":{}}"#
        let v = try JSONParser.parse(text)
        #expect(v.objectValue?["a"] == .int(1))
        #expect(v.objectValue?["b"] == .float(-2.5))
        #expect(v.objectValue?["c"] == .string("x\"\n\u{1}é😀"))
        #expect(try JSONParser.parse(v.serialized) == v)
        #expect(JSONValue.float(2).serialized == "2.0", "a float stays a float")
        // Whole numbers take the fast path, the rest String(Double); both parse back as floats.
        for d in [0.0, -0.0, 3, -2, 123456789012345, 999999999999999.0, 1e15, 1e300, 0.5, -1.25e-7] {
            let text = JSONValue.float(d).serialized
            #expect(try JSONParser.parse(text) == .float(d == 0 ? 0 : d), "\(d) → \(text)")
        }
        #expect(JSONValue.float(-2).serialized == "-2.0" && JSONValue.float(.nan).serialized == "null")
        #expect(JSONValue.string("plain").serialized == "\"plain\"" && JSONValue.string("a\"b\\c\n").serialized == #""a\"b\\c\n""#)
        #expect(try JSONParser.parse(#""\ud83d\ude00""#) == .string("😀"))
    }

    @Test(arguments: ["", "{", "{\"a\":1,}", "[1,]", "01", "1.", "\"\\x\"", "{\"a\":1,\"a\":2}", "nul", "1 2", "\"\u{1}\"", "\"\\ud800\""])
    func rejects(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(text) }
    }

    @Test func limitsNesting() {
        #expect(throws: JSONParseError.self) { try JSONParser.parse(String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
    }
}

let exampleIDL = """
    # An example.
    interface org.example.test

    type Item (name: string, tags: []string, extra: ?[string]int)
    type Mode (fast, slow)

    # Echoes.
    method Echo(text: string, count: ?int, mode: ?Mode) -> (text: string)
    method Watch() -> (n: int)
    method Items(items: []Item) -> ()
    error Broken (why: string)
    """

@Suite("varlink IDL (pure)")
struct IDLTests {
    @Test func parsesAndValidates() throws {
        let i = try VarlinkInterface(parsing: exampleIDL)
        #expect(i.name == "org.example.test")
        #expect(i.methods.keys.sorted() == ["Echo", "Items", "Watch"])
        #expect(i.errors["Broken"]?.first?.name == "why")
        let echo = try #require(i.methods["Echo"]).input
        #expect(i.invalidParameter(["text": .string("hi")], fields: echo) == nil)
        #expect(i.invalidParameter(["text": .string("hi"), "count": .null, "mode": .string("slow")], fields: echo) == nil)
        #expect(i.invalidParameter([:], fields: echo) == "text", "missing required")
        #expect(i.invalidParameter(["text": .int(1)], fields: echo) == "text", "wrong type")
        #expect(i.invalidParameter(["text": .string(""), "bogus": .int(1)], fields: echo) == "bogus", "unknown key")
        #expect(i.invalidParameter(["text": .string(""), "mode": .string("medium")], fields: echo) == "mode", "not an enum case")
        let items = try #require(i.methods["Items"]).input
        let good: JSONValue = .array([.object(["name": .string("a"), "tags": .array([.string("x")]), "extra": .object(["k": .int(1)])])])
        #expect(i.invalidParameter(["items": good], fields: items) == nil)
        let bad: JSONValue = .array([.object(["name": .string("a"), "tags": .array([.int(1)])])])
        #expect(i.invalidParameter(["items": bad], fields: items) == "items")
    }

    @Test(arguments: [
        "interface x", "interface org.example.a\nmethod lower() -> ()", "interface org.example.a\nmethod A(x: nope) -> ()",
        "interface org.example.a\ntype A (x: int)\ntype A (y: int)", "interface org.example.a\nmethod A(x: int -> ()",
    ])
    func rejectsBadDescriptions(_ text: String) {
        #expect(throws: VarlinkIDLError.self) { try VarlinkInterface(parsing: text) }
    }

    @Test func serviceInterfaceParses() throws {
        let s = try VarlinkInterface(parsing: VarlinkServiceDescription.serviceInterfaceText)
        #expect(s.methods.keys.sorted() == ["GetInfo", "GetInterfaceDescription"])
        #expect(s.errors.count == 6)
    }
}

@Suite("varlink connection state machine (pure)")
struct ConnectionStateMachineTests {
    func machine(permitted: Bool = true, maxMessageSize: Int = 1024) throws -> VarlinkConnectionStateMachine {
        let service = VarlinkServiceDescription(
            vendor: "v", product: "p", version: "1", url: "u",
            interfaces: [try VarlinkInterface(parsing: exampleIDL)], moreRequired: ["org.example.test.Watch"])
        return VarlinkConnectionStateMachine(service: service, permitted: permitted, maxMessageSize: maxMessageSize)
    }

    func bytes(_ s: String) -> [UInt8] { Array(s.utf8) + [0] }

    func replies(_ actions: [VarlinkConnectionStateMachine.Action]) throws -> [VarlinkReply] {
        try actions.compactMap { a -> VarlinkReply? in
            guard case .send(let b) = a else { return nil }
            #expect(b.last == 0)
            return try VarlinkReply.decode(try JSONParser.parse(Array(b.dropLast())))
        }
    }

    @Test func answersServiceCallsItself() throws {
        var m = try machine()
        let r = try replies(m.handle(.received(bytes(#"{"method":"org.varlink.service.GetInfo"}"#))))
        #expect(r.first?.parameters["interfaces"] == .array([.string("org.varlink.service"), .string("org.example.test")]))
        let d = try replies(m.handle(.received(bytes(#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.example.test"}}"#))))
        #expect(d.first?.parameters["description"]?.stringValue?.contains("method Echo") == true)
        let nf = try replies(m.handle(.received(bytes(#"{"method":"org.varlink.service.GetInterfaceDescription","parameters":{"interface":"org.nope.x"}}"#))))
        #expect(nf.first?.error == "org.varlink.service.InterfaceNotFound")
    }

    @Test func checksCallsBeforeDispatch() throws {
        var m = try machine()
        let cases: [(String, String)] = [
            (#"{"method":"org.nope.x.Y"}"#, "org.varlink.service.InterfaceNotFound"),
            (#"{"method":"org.example.test.Nope"}"#, "org.varlink.service.MethodNotFound"),
            (#"{"method":"org.example.test.Echo","parameters":{"text":5}}"#, "org.varlink.service.InvalidParameter"),
            (#"{"method":"org.example.test.Echo","parameters":{"text":"a","x":1}}"#, "org.varlink.service.InvalidParameter"),
            (#"{"method":"org.example.test.Watch"}"#, "org.varlink.service.ExpectedMore"),
        ]
        for (call, error) in cases {
            let r = try replies(m.handle(.received(bytes(call))))
            #expect(r.map(\.error) == [error], "\(call)")
        }
        var denied = try machine(permitted: false)
        #expect(try replies(denied.handle(.received(bytes(#"{"method":"org.example.test.Echo","parameters":{"text":"a"}}"#)))).first?.error == "org.varlink.service.PermissionDenied")
        #expect(try replies(denied.handle(.received(bytes(#"{"method":"org.varlink.service.GetInfo"}"#)))).first?.error == nil, "introspection stays open")
    }

    @Test func missingParametersMeanEmptyObject() throws {
        var m = try machine()
        let a = m.handle(.received(bytes(#"{"method":"org.example.test.Items","parameters":{"items":[]}}"#)))
        #expect(a == [.dispatch(VarlinkCall(method: "org.example.test.Items", parameters: ["items": .array([])]))])
    }

    @Test func repliesInRequestOrderOneCallAtATime() throws {
        var m = try machine()
        // Three pipelined calls in one read: only the first is dispatched.
        let input = bytes(#"{"method":"org.example.test.Echo","parameters":{"text":"1"}}"#)
            + bytes(#"{"method":"org.varlink.service.GetInfo"}"#)
            + bytes(#"{"method":"org.example.test.Echo","parameters":{"text":"3"}}"#)
        let first = m.handle(.received(input))
        #expect(first.count == 1)
        guard case .dispatch(let c1)? = first.first else { Issue.record("no dispatch"); return }
        #expect(c1.parameters["text"] == .string("1"))
        // Finishing the first answers it, then GetInfo (built in), then dispatches the third.
        let next = m.handle(.replied(VarlinkReply(parameters: ["text": .string("1")])))
        let sent = try replies(next)
        #expect(sent.count == 2)
        #expect(sent[0].parameters["text"] == .string("1"))
        #expect(sent[1].parameters["vendor"] == .string("v"))
        guard case .dispatch(let c3)? = next.last else { Issue.record("third not dispatched"); return }
        #expect(c3.parameters["text"] == .string("3"))
    }

    @Test func continuesOnlyWhenMoreWasAsked() throws {
        var m = try machine()
        _ = m.handle(.received(bytes(#"{"method":"org.example.test.Echo","parameters":{"text":"a"}}"#)))
        let r = try replies(m.handle(.replied(VarlinkReply(parameters: [:], continues: true))))
        #expect(r.first?.continues == false, "a streaming reply to a call without more ends the call")
        #expect(!m.isBusy)
        _ = m.handle(.received(bytes(#"{"method":"org.example.test.Watch","more":true}"#)))
        #expect(try replies(m.handle(.replied(VarlinkReply(parameters: ["n": .int(1)], continues: true)))).first?.continues == true)
        #expect(m.isBusy)
    }

    @Test func onewayGetsNoReply() throws {
        var m = try machine()
        let a = m.handle(.received(bytes(#"{"method":"org.example.test.Echo","parameters":{"text":"a"},"oneway":true}"#)))
        #expect(a.count == 1)
        #expect(m.handle(.replied(VarlinkReply(parameters: ["text": .string("a")]))).isEmpty)
        #expect(try replies(m.handle(.received(bytes(#"{"method":"org.nope.x.Y","oneway":true}"#)))).isEmpty)
    }

    @Test(arguments: [
        "not json", #"{"method":"org.example.test.Echo","bogus":1}"#, #"{"parameters":{}}"#, #"{"method":5}"#,
        #"{"method":"Echo"}"#, #"{"method":"org.example.test.Echo","parameters":[]}"#, #"[1]"#,
        #"{"method":"org.example.test.Watch","more":true,"oneway":true}"#,
    ])
    func protocolViolationsClose(_ text: String) throws {
        var m = try machine()
        let a = m.handle(.received(bytes(text)))
        guard case .close? = a.last else { Issue.record("not closed: \(a)"); return }
        #expect(m.isClosed)
        #expect(m.handle(.received(bytes(#"{"method":"org.varlink.service.GetInfo"}"#))).isEmpty)
    }

    @Test func oversizeMessagesClose() throws {
        var m = try machine(maxMessageSize: 100)
        let a = m.handle(.received(Array(repeating: UInt8(ascii: " "), count: 101)))
        #expect(a.count == 1)
        if case .close(let why)? = a.first { #expect(why.contains("larger than 100")) } else { Issue.record("\(a)") }
    }

    @Test func messagesSplitAcrossReads() throws {
        var m = try machine()
        let all = bytes(#"{"method":"org.varlink.service.GetInfo"}"#)
        #expect(m.handle(.received(Array(all.prefix(10)))).isEmpty)
        #expect(try replies(m.handle(.received(Array(all.dropFirst(10))))).count == 1)
    }
}

@Suite("accept back-off (pure)")
struct AcceptBackoffTests {
    @Test("EMFILE waits 10 ms doubling to 1 s, logs once per episode; a success resets")
    func backoff() {
        var b = AcceptBackoff()
        #expect(b.pollTimeoutMs == -1)
        #expect(b.failed(errno: EMFILE)?.contains("Too many open files") == true)
        #expect(b.pollTimeoutMs == 10)
        for _ in 0..<10 { #expect(b.failed(errno: EMFILE) == nil) }
        #expect(b.pollTimeoutMs == 1000)
        b.succeeded()
        #expect(!b.isBackingOff)
        #expect(b.failed(errno: ECONNABORTED) == nil && !b.isBackingOff, "one aborted connection is no episode")
    }
}
