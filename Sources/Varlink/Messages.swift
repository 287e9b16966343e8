/// A method call (<https://varlink.org/Method-Call>).
public struct VarlinkCall: Sendable, Equatable {
    /// Fully qualified: `org.varlink.service.GetInfo`.
    public var method: String
    public var parameters: JSONObject
    /// No reply is wanted.
    public var oneway: Bool
    /// The client accepts several replies (`continues`).
    public var more: Bool
    /// The client asks to switch protocols after the reply (not supported by this library).
    public var upgrade: Bool

    public init(method: String, parameters: JSONObject = [:], oneway: Bool = false, more: Bool = false, upgrade: Bool = false) {
        self.method = method
        self.parameters = parameters
        self.oneway = oneway
        self.more = more
        self.upgrade = upgrade
    }

    /// `org.varlink.service` of `org.varlink.service.GetInfo`.
    public var interface: String { String(method[..<(method.lastIndex(of: ".") ?? method.startIndex)]) }
    /// `GetInfo` of `org.varlink.service.GetInfo`.
    public var methodName: String {
        guard let dot = method.lastIndex(of: ".") else { return method }
        return String(method[method.index(after: dot)...])
    }

    /// Decodes a call strictly, as sd-varlink does: only the keys `method`, `parameters`,
    /// `oneway`, `more`, `upgrade`; `method` a string naming `interface.Method`; a missing
    /// `parameters` means `{}`; `oneway` and `more` not both.
    public static func decode(_ value: JSONValue) throws(VarlinkProtocolError) -> VarlinkCall {
        guard case .object(let o) = value else { throw VarlinkProtocolError("a call must be a JSON object") }
        for key in o.keys where !["method", "parameters", "oneway", "more", "upgrade"].contains(key) {
            throw VarlinkProtocolError("unknown key \"\(key)\" in a call")
        }
        guard case .string(let method)? = o["method"] else { throw VarlinkProtocolError("a call needs \"method\" as a string") }
        guard let dot = method.lastIndex(of: "."), isValidInterfaceName(String(method[..<dot])),
              isValidMemberName(String(method[method.index(after: dot)...])) else {
            throw VarlinkProtocolError("\"\(method)\" is not interface.Method")
        }
        var parameters = JSONObject()
        switch o["parameters"] {
        case nil, .null?: break
        case .object(let p)?: parameters = p
        default: throw VarlinkProtocolError("\"parameters\" must be an object")
        }
        func flag(_ k: String) throws(VarlinkProtocolError) -> Bool {
            switch o[k] {
            case nil, .null?: return false
            case .bool(let b)?: return b
            default: throw VarlinkProtocolError("\"\(k)\" must be a boolean")
            }
        }
        let call = VarlinkCall(method: method, parameters: parameters, oneway: try flag("oneway"), more: try flag("more"), upgrade: try flag("upgrade"))
        if call.oneway && call.more { throw VarlinkProtocolError("\"oneway\" and \"more\" exclude each other") }
        return call
    }

    public var json: JSONValue {
        var o: JSONObject = ["method": .string(method)]
        if !parameters.isEmpty { o["parameters"] = .object(parameters) }
        if oneway { o["oneway"] = .bool(true) }
        if more { o["more"] = .bool(true) }
        if upgrade { o["upgrade"] = .bool(true) }
        return .object(o)
    }
}

/// A reply: parameters, or an error name with parameters; `continues` while more follow.
public struct VarlinkReply: Sendable, Equatable {
    public var parameters: JSONObject
    public var continues: Bool
    /// A fully qualified error name, e.g. `org.varlink.service.MethodNotFound`.
    public var error: String?

    public init(parameters: JSONObject = [:], continues: Bool = false, error: String? = nil) {
        self.parameters = parameters
        self.continues = continues
        self.error = error
    }

    public static func decode(_ value: JSONValue) throws(VarlinkProtocolError) -> VarlinkReply {
        guard case .object(let o) = value else { throw VarlinkProtocolError("a reply must be a JSON object") }
        for key in o.keys where !["parameters", "continues", "error"].contains(key) {
            throw VarlinkProtocolError("unknown key \"\(key)\" in a reply")
        }
        var reply = VarlinkReply()
        switch o["parameters"] {
        case nil, .null?: break
        case .object(let p)?: reply.parameters = p
        default: throw VarlinkProtocolError("\"parameters\" must be an object")
        }
        switch o["continues"] {
        case nil, .null?: break
        case .bool(let b)?: reply.continues = b
        default: throw VarlinkProtocolError("\"continues\" must be a boolean")
        }
        switch o["error"] {
        case nil, .null?: break
        case .string(let e)?: reply.error = e
        default: throw VarlinkProtocolError("\"error\" must be a string")
        }
        return reply
    }

    public var json: JSONValue {
        var o = JSONObject()
        if let error { o["error"] = .string(error) }
        o["parameters"] = .object(parameters)
        if continues { o["continues"] = .bool(true) }
        return .object(o)
    }
}

/// An error reply, thrown by method handlers and by the client.
public struct VarlinkError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Fully qualified error name.
    public var name: String
    public var parameters: JSONObject

    public init(_ name: String, _ parameters: JSONObject = [:]) {
        self.name = name
        self.parameters = parameters
    }

    public var description: String {
        parameters.isEmpty ? name : "\(name) \(JSONValue.object(parameters).serialized)"
    }

    // The errors of org.varlink.service.
    public static func interfaceNotFound(_ interface: String) -> VarlinkError {
        VarlinkError("org.varlink.service.InterfaceNotFound", ["interface": .string(interface)])
    }
    public static func methodNotFound(_ method: String) -> VarlinkError {
        VarlinkError("org.varlink.service.MethodNotFound", ["method": .string(method)])
    }
    public static func methodNotImplemented(_ method: String) -> VarlinkError {
        VarlinkError("org.varlink.service.MethodNotImplemented", ["method": .string(method)])
    }
    public static func invalidParameter(_ parameter: String) -> VarlinkError {
        VarlinkError("org.varlink.service.InvalidParameter", ["parameter": .string(parameter)])
    }
    public static let permissionDenied = VarlinkError("org.varlink.service.PermissionDenied")
    public static let expectedMore = VarlinkError("org.varlink.service.ExpectedMore")
}

/// A violation of the protocol by the peer (not valid JSON, a malformed call, an oversize
/// message); the connection is closed.
public struct VarlinkProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Splits a byte stream into NUL-terminated messages, bounded in size.
public struct VarlinkFramer: Sendable {
    public let maxMessageSize: Int
    private var buffer: [UInt8] = []

    public init(maxMessageSize: Int) { self.maxMessageSize = maxMessageSize }

    /// Bytes received but not yet a whole message.
    public var pendingCount: Int { buffer.count }

    /// Appends `bytes` and returns the complete messages (without their NUL). The size limit
    /// is checked before anything is appended, so the buffer never grows past it.
    public mutating func feed(_ bytes: some Collection<UInt8>) throws(VarlinkProtocolError) -> [[UInt8]] {
        var messages: [[UInt8]] = []
        var rest = bytes[...]
        while !rest.isEmpty {
            let end = rest.firstIndex(of: 0)
            let piece = rest[..<(end ?? rest.endIndex)]
            guard buffer.count + piece.count <= maxMessageSize else {
                buffer = []
                throw VarlinkProtocolError("message larger than \(maxMessageSize) bytes")
            }
            guard let end else {
                buffer.append(contentsOf: piece)
                break
            }
            if buffer.isEmpty {
                messages.append(Array(piece))
            } else {
                buffer.append(contentsOf: piece)
                messages.append(buffer)
                buffer = []
            }
            rest = rest[rest.index(after: end)...]
        }
        return messages
    }

    /// One message on the wire: the JSON text and a NUL.
    public static func frame(_ value: JSONValue) -> [UInt8] { Array(value.serialized.utf8) + [0] }
}
