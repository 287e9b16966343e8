/// One method of a varlink interface as a Swift type: its parameters and its reply are
/// `Codable` values bridged to ``JSONValue`` by ``JSONValueEncoder``/``JSONValueDecoder``, so
/// a server dispatches on it and a client calls it without spelling a method name or a
/// parameter key anywhere else.
public protocol VarlinkMethod: Sendable {
    associatedtype Parameters: Codable & Sendable & Equatable
    associatedtype Reply: Codable & Sendable & Equatable
    /// The interface, e.g. `io.amp.Metadb`.
    static var interface: String { get }
    /// The method's name within it, e.g. `GetStatus`.
    static var name: String { get }
}

extension VarlinkMethod {
    /// `interface.name`, as a call carries it.
    public static var qualifiedName: String { "\(interface).\(name)" }

    /// Decodes a call's parameters; a mismatch is `org.varlink.service.InvalidParameter`
    /// naming the first offending parameter.
    public static func parameters(of call: VarlinkCall) throws(VarlinkError) -> Parameters {
        do {
            return try JSONValueDecoder().decode(Parameters.self, from: call.parameters)
        } catch {
            throw .invalidParameter(String(error.path.split(separator: ".").first ?? "parameters"))
        }
    }

    /// Encodes a reply's parameters.
    public static func encode(_ reply: Reply) throws(VarlinkError) -> JSONObject {
        do {
            return try JSONValueEncoder().encodeObject(reply)
        } catch {
            throw VarlinkError("org.varlink.service.MethodNotImplemented", ["method": .string(qualifiedName), "reason": .string("\(error)")])
        }
    }
}

/// The parameters or reply of a method that has none.
public struct NoParameters: Codable, Sendable, Equatable {
    public init() {}
}

extension VarlinkClient {
    /// Calls `M` and decodes its reply. Throws ``VarlinkError`` (the service's error reply),
    /// ``VarlinkClientError`` (connection, protocol, time-out) or ``JSONCodingError`` (a reply
    /// that does not match `M.Reply`).
    public func call<M: VarlinkMethod>(_ method: M.Type, _ parameters: M.Parameters, timeout: Duration = .seconds(30)) async throws -> M.Reply {
        let object = try JSONValueEncoder().encodeObject(parameters)
        let reply = try await call(M.qualifiedName, object, timeout: timeout)
        return try JSONValueDecoder().decode(M.Reply.self, from: reply)
    }

    /// Calls `M` with `more`; yields each decoded reply until the last.
    public func stream<M: VarlinkMethod>(_ method: M.Type, _ parameters: M.Parameters) -> AsyncThrowingMapSequence<AsyncThrowingStream<JSONObject, any Error>, M.Reply> {
        let object = (try? JSONValueEncoder().encodeObject(parameters)) ?? [:]
        return stream(M.qualifiedName, object).map { try JSONValueDecoder().decode(M.Reply.self, from: $0) }
    }
}
