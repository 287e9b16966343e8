/// What a varlink service offers, as data: its identity and its interfaces (including
/// `org.varlink.service`, which is added automatically).
public struct VarlinkServiceDescription: Sendable {
    public var vendor: String
    public var product: String
    public var version: String
    public var url: String
    public private(set) var interfaces: [String: VarlinkInterface] = [:]
    /// Fully qualified methods that must be called with `more` (else `ExpectedMore`).
    public var moreRequired: Set<String>

    public init(vendor: String, product: String, version: String, url: String,
                interfaces: [VarlinkInterface], moreRequired: Set<String> = []) {
        self.vendor = vendor
        self.product = product
        self.version = version
        self.url = url
        self.moreRequired = moreRequired
        for i in [Self.serviceInterface] + interfaces { self.interfaces[i.name] = i }
    }

    /// The interface names, in a stable order (`org.varlink.service` first).
    public var interfaceNames: [String] {
        ["org.varlink.service"] + interfaces.keys.filter { $0 != "org.varlink.service" }.sorted()
    }

    /// `org.varlink.service` (<https://varlink.org/Service>).
    public static let serviceInterface: VarlinkInterface = {
        // The text is constant and known to parse; a failure would be a bug caught by the tests.
        (try? VarlinkInterface(parsing: serviceInterfaceText)) ?? { preconditionFailure("org.varlink.service IDL") }()
    }()

    public static let serviceInterfaceText = """
        # The Varlink Service Interface is provided by every varlink service. It
        # describes the service and the interfaces it implements.
        interface org.varlink.service

        # Get a list of all the interfaces a service provides and information
        # about the implementation.
        method GetInfo() -> (
          vendor: string,
          product: string,
          version: string,
          url: string,
          interfaces: []string
        )

        # Get the description of an interface that is implemented by this service.
        method GetInterfaceDescription(interface: string) -> (description: string)

        # The requested interface was not found.
        error InterfaceNotFound (interface: string)

        # The requested method was not found
        error MethodNotFound (method: string)

        # The interface defines the requested method, but the service does not
        # implement it.
        error MethodNotImplemented (method: string)

        # One of the passed parameters is invalid.
        error InvalidParameter (parameter: string)

        # Client is denied access
        error PermissionDenied ()

        # Method is expected to be called with 'more' set to true, but wasn't
        error ExpectedMore ()

        """
}

/// One server-side connection as a pure state machine: bytes and handler replies in,
/// actions out. Calls are handled one at a time, so replies leave in request order; calls
/// that arrive meanwhile (pipelining) wait in a bounded queue. `org.varlink.service` is
/// answered here; every other call is checked (interface, method, parameters against the
/// IDL, `more` where required, the peer's permission) before it is dispatched.
///
/// A protocol violation (not JSON, a malformed call, an oversize message, too many queued
/// calls) closes the connection, as sd-varlink does.
public struct VarlinkConnectionStateMachine: Sendable {
    public enum Event: Sendable, Equatable {
        case received([UInt8])
        /// A reply from the handler of the current call; the call ends with a reply whose
        /// `continues` is false.
        case replied(VarlinkReply)
        case peerClosed
    }

    public enum Action: Sendable, Equatable {
        /// Run the handler of this call (checked already).
        case dispatch(VarlinkCall)
        /// Write these bytes (one framed message).
        case send([UInt8])
        /// Close the connection, for this reason.
        case close(String)
    }

    private let service: VarlinkServiceDescription
    private let permitted: Bool
    private let maxQueued: Int
    private var framer: VarlinkFramer
    private var queue: [VarlinkCall] = []
    private var current: VarlinkCall?
    public private(set) var isClosed = false

    /// - Parameters:
    ///   - permitted: whether the peer may call anything beyond `org.varlink.service`
    ///     (else `PermissionDenied`).
    public init(service: VarlinkServiceDescription, permitted: Bool, maxMessageSize: Int = 1 << 20, maxQueued: Int = 64) {
        self.service = service
        self.permitted = permitted
        self.maxQueued = maxQueued
        self.framer = VarlinkFramer(maxMessageSize: maxMessageSize)
    }

    /// Whether a call is being handled.
    public var isBusy: Bool { current != nil }

    public mutating func handle(_ event: Event) -> [Action] {
        guard !isClosed else { return [] }
        switch event {
        case .peerClosed:
            isClosed = true
            return [.close("the peer closed the connection")]
        case .received(let bytes):
            let messages: [[UInt8]]
            do { messages = try framer.feed(bytes) } catch { return close(error.message) }
            for m in messages {
                let call: VarlinkCall
                do {
                    call = try VarlinkCall.decode(try JSONParser.parse(m))
                } catch let e as JSONParseError {
                    return close(e.description)
                } catch let e as VarlinkProtocolError {
                    return close(e.message)
                } catch {
                    return close("\(error)")
                }
                queue.append(call)
                if queue.count > maxQueued { return close("more than \(maxQueued) calls queued") }
            }
            return startNext()
        case .replied(var reply):
            guard let call = current else { return [] }
            if reply.continues && !call.more { reply.continues = false }  // a handler bug: end the call
            var actions: [Action] = []
            if !call.oneway { actions.append(.send(VarlinkFramer.frame(reply.json))) }
            if !reply.continues {
                current = nil
                actions += startNext()
            }
            return actions
        }
    }

    private mutating func close(_ reason: String) -> [Action] {
        isClosed = true
        return [.close(reason)]
    }

    private func reply(_ call: VarlinkCall, _ reply: VarlinkReply) -> [Action] {
        call.oneway ? [] : [.send(VarlinkFramer.frame(reply.json))]
    }

    private func error(_ call: VarlinkCall, _ e: VarlinkError) -> [Action] {
        reply(call, VarlinkReply(parameters: e.parameters, error: e.name))
    }

    /// Takes queued calls until one must wait for a handler.
    private mutating func startNext() -> [Action] {
        var actions: [Action] = []
        while current == nil, !queue.isEmpty {
            let call = queue.removeFirst()
            if let e = check(call) {
                actions += error(call, e)
                continue
            }
            if call.interface == "org.varlink.service" {
                switch builtIn(call) {
                case .success(let parameters): actions += reply(call, VarlinkReply(parameters: parameters))
                case .failure(let e): actions += error(call, e)
                }
                continue
            }
            current = call
            actions.append(.dispatch(call))
        }
        return actions
    }

    private func check(_ call: VarlinkCall) -> VarlinkError? {
        guard let interface = service.interfaces[call.interface] else { return .interfaceNotFound(call.interface) }
        guard let method = interface.methods[call.methodName] else { return .methodNotFound(call.method) }
        if call.interface != "org.varlink.service" && !permitted { return .permissionDenied }
        if call.upgrade { return .methodNotImplemented(call.method) }
        if let bad = interface.invalidParameter(call.parameters, fields: method.input) { return .invalidParameter(bad) }
        if service.moreRequired.contains(call.method) && !call.more { return .expectedMore }
        return nil
    }

    private func builtIn(_ call: VarlinkCall) -> Result<JSONObject, VarlinkError> {
        switch call.methodName {
        case "GetInfo":
            return .success([
                "vendor": .string(service.vendor), "product": .string(service.product),
                "version": .string(service.version), "url": .string(service.url),
                "interfaces": .array(service.interfaceNames.map { .string($0) }),
            ])
        case "GetInterfaceDescription":
            let name = call.parameters["interface"]?.stringValue ?? ""
            guard let i = service.interfaces[name] else { return .failure(.interfaceNotFound(name)) }
            return .success(["description": .string(i.description)])
        default:
            return .failure(.methodNotImplemented(call.method))
        }
    }
}
