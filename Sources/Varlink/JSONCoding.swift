/// `Codable` over the strict ``JSONValue``: the one bridge between Swift types and what travels
/// on a varlink connection. Integers stay `int` (checked: a value that does not fit the Swift
/// type is an error, never a trap), floating-point values `float`; optionals that are `nil` are
/// left out, and a missing key or `null` decodes as `nil`; `[String: T]` is an object.
public struct JSONValueEncoder: Sendable {
    public init() {}

    /// Encodes `value` as a JSON value.
    public func encode<T: Encodable>(_ value: T) throws(JSONCodingError) -> JSONValue {
        if let direct = value as? any JSONValueRepresentable { return direct.jsonValue }
        let box = EncodingBox(path: [])
        do {
            try value.encode(to: box)
        } catch let error as JSONCodingError {
            throw error
        } catch {
            throw JSONCodingError(path: "", message: "\(error)")
        }
        return box.value ?? .object([:])
    }

    /// Encodes `value`, which must encode as an object (a method's parameters or reply).
    public func encodeObject<T: Encodable>(_ value: T) throws(JSONCodingError) -> JSONObject {
        guard case .object(let object) = try encode(value) else {
            throw JSONCodingError(path: "", message: "\(T.self) does not encode as an object")
        }
        return object
    }
}

/// Decodes `Decodable` types from a ``JSONValue`` (see ``JSONValueEncoder``).
public struct JSONValueDecoder: Sendable {
    public init() {}

    public func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws(JSONCodingError) -> T {
        do {
            return try T(from: DecodingBox(value: value, path: []))
        } catch let error as JSONCodingError {
            throw error
        } catch {
            throw JSONCodingError(path: "", message: "\(error)")
        }
    }

    public func decode<T: Decodable>(_ type: T.Type, from object: JSONObject) throws(JSONCodingError) -> T {
        try decode(type, from: .object(object))
    }
}

/// A value that does not match the type it is coded as, with where (`status.restarts`).
public struct JSONCodingError: Error, Sendable, Equatable, CustomStringConvertible {
    public var path: String
    public var message: String
    public var description: String { path.isEmpty ? message : "\(path): \(message)" }
}

private func pathText(_ path: [any CodingKey]) -> String {
    path.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")
}

private extension String {
    func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

private struct IndexKey: CodingKey {
    var stringValue: String
    var intValue: Int?
    init(_ index: Int) { stringValue = "\(index)"; intValue = index }
    init?(stringValue: String) { self.stringValue = stringValue; intValue = Int(stringValue) }
    init?(intValue: Int) { self.init(intValue) }
}

// MARK: - Encoding

/// Where an encoder writes: a slot that a container fills (objects and arrays are filled in
/// place through references, then read back when the encoding ends).
private final class EncodingBox: Encoder {
    let codingPath: [any CodingKey]
    var userInfo: [CodingUserInfoKey: Any] { [:] }
    var value: JSONValue?
    private var object: ObjectRef?
    private var array: ArrayRef?

    init(path: [any CodingKey]) { codingPath = path }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        let ref = object ?? ObjectRef()
        object = ref
        value = nil
        return KeyedEncodingContainer(KeyedEncoder<Key>(ref: ref, path: codingPath, finish: { [unowned self] in self.value = .object(ref.object) }))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        let ref = array ?? ArrayRef()
        array = ref
        return UnkeyedEncoder(ref: ref, path: codingPath, finish: { [unowned self] in self.value = .array(ref.items.map { $0() }) })
    }

    func singleValueContainer() -> any SingleValueEncodingContainer { SingleEncoder(box: self) }
}

private final class ObjectRef {
    var object = JSONObject()
}

private final class ArrayRef {
    /// Lazily evaluated items: a nested container fills its item after it is created.
    var items: [() -> JSONValue] = []
}

private func encodeScalar<T: Encodable>(_ value: T, path: [any CodingKey]) throws -> JSONValue {
    switch value {
    case let v as Bool: return .bool(v)
    case let v as String: return .string(v)
    case let v as Double: return .float(v)
    case let v as Float: return .float(Double(v))
    case let v as Int: return .int(Int64(v))
    case let v as Int8: return .int(Int64(v))
    case let v as Int16: return .int(Int64(v))
    case let v as Int32: return .int(Int64(v))
    case let v as Int64: return .int(v)
    case let v as UInt8: return .int(Int64(v))
    case let v as UInt16: return .int(Int64(v))
    case let v as UInt32: return .int(Int64(v))
    case let v as UInt:
        guard let n = Int64(exactly: v) else { throw JSONCodingError(path: pathText(path), message: "\(v) does not fit a varlink int") }
        return .int(n)
    case let v as UInt64:
        guard let n = Int64(exactly: v) else { throw JSONCodingError(path: pathText(path), message: "\(v) does not fit a varlink int") }
        return .int(n)
    case let v as any JSONValueRepresentable: return v.jsonValue
    default:
        let box = EncodingBox(path: path)
        try value.encode(to: box)
        return box.value ?? .null
    }
}

private struct KeyedEncoder<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let ref: ObjectRef
    let path: [any CodingKey]
    let finish: () -> Void
    var codingPath: [any CodingKey] { path }

    init(ref: ObjectRef, path: [any CodingKey], finish: @escaping () -> Void) {
        self.ref = ref
        self.path = path
        self.finish = finish
        finish()
    }

    private func set(_ key: Key, _ value: JSONValue) {
        ref.object[key.stringValue] = value
        finish()
    }

    mutating func encodeNil(forKey key: Key) throws { set(key, .null) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        set(key, try encodeScalar(value, path: path + [key]))
    }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        guard let value else { return }
        try encode(value, forKey: key)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectRef()
        let parent = ref, done = finish
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(ref: nested, path: path + [key], finish: {
            parent.object[key.stringValue] = .object(nested.object)
            done()
        }))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = ArrayRef()
        let parent = ref, done = finish
        return UnkeyedEncoder(ref: nested, path: path + [key], finish: {
            parent.object[key.stringValue] = .array(nested.items.map { $0() })
            done()
        })
    }
    mutating func superEncoder() -> any Encoder { EncodingBox(path: path) }
    mutating func superEncoder(forKey key: Key) -> any Encoder { EncodingBox(path: path + [key]) }
}

private struct UnkeyedEncoder: UnkeyedEncodingContainer {
    let ref: ArrayRef
    let path: [any CodingKey]
    let finish: () -> Void
    var codingPath: [any CodingKey] { path }
    var count: Int { ref.items.count }

    init(ref: ArrayRef, path: [any CodingKey], finish: @escaping () -> Void) {
        self.ref = ref
        self.path = path
        self.finish = finish
        finish()
    }

    mutating func encodeNil() throws {
        ref.items.append { .null }
        finish()
    }
    mutating func encode<T: Encodable>(_ value: T) throws {
        let v = try encodeScalar(value, path: path + [IndexKey(count)])
        ref.items.append { v }
        finish()
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
        let nested = ObjectRef()
        ref.items.append { .object(nested.object) }
        return KeyedEncodingContainer(KeyedEncoder<NestedKey>(ref: nested, path: path + [IndexKey(count - 1)], finish: finish))
    }
    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = ArrayRef()
        ref.items.append { .array(nested.items.map { $0() }) }
        return UnkeyedEncoder(ref: nested, path: path + [IndexKey(count - 1)], finish: finish)
    }
    mutating func superEncoder() -> any Encoder { EncodingBox(path: path) }
}

private struct SingleEncoder: SingleValueEncodingContainer {
    let box: EncodingBox
    var codingPath: [any CodingKey] { box.codingPath }
    mutating func encodeNil() throws { box.value = .null }
    mutating func encode<T: Encodable>(_ value: T) throws { box.value = try encodeScalar(value, path: box.codingPath) }
}

// MARK: - Decoding

private struct DecodingBox: Decoder {
    let value: JSONValue
    let path: [any CodingKey]
    var codingPath: [any CodingKey] { path }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func fail(_ message: String) -> JSONCodingError { JSONCodingError(path: pathText(path), message: message) }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        guard case .object(let o) = value else { throw fail("expected an object, found \(value.typeName)") }
        return KeyedDecodingContainer(KeyedDecoder<Key>(object: o, path: path))
    }
    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        guard case .array(let a) = value else { throw fail("expected an array, found \(value.typeName)") }
        return UnkeyedDecoder(items: a, path: path)
    }
    func singleValueContainer() throws -> any SingleValueDecodingContainer { SingleDecoder(value: value, path: path) }
}

private func decodeScalar<T: Decodable>(_ type: T.Type, _ value: JSONValue, path: [any CodingKey]) throws -> T {
    func fail(_ expected: String) -> JSONCodingError {
        JSONCodingError(path: pathText(path), message: "expected \(expected), found \(value.typeName)")
    }
    func integer<I: FixedWidthInteger>(_: I.Type) throws -> I {
        guard case .int(let n) = value else { throw fail("an int") }
        guard let v = I(exactly: n) else { throw JSONCodingError(path: pathText(path), message: "\(n) is out of range for \(I.self)") }
        return v
    }
    /// `v` as `T` (it is, by the case that calls this; a mismatch would be a bug, reported).
    func typed(_ v: Any) throws -> T {
        guard let t = v as? T else { throw JSONCodingError(path: pathText(path), message: "internal: \(Swift.type(of: v)) is not \(T.self)") }
        return t
    }
    switch type {
    case is Bool.Type:
        guard case .bool(let b) = value else { throw fail("a bool") }
        return try typed(b)
    case is String.Type:
        guard case .string(let s) = value else { throw fail("a string") }
        return try typed(s)
    case is Double.Type:
        guard let d = value.doubleValue else { throw fail("a float") }
        return try typed(d)
    case is Int.Type: return try typed(try integer(Int.self))
    case is Int32.Type: return try typed(try integer(Int32.self))
    case is Int64.Type: return try typed(try integer(Int64.self))
    case is UInt64.Type: return try typed(try integer(UInt64.self))
    case is UInt32.Type: return try typed(try integer(UInt32.self))
    default:
        return try T(from: DecodingBox(value: value, path: path))
    }
}

private struct KeyedDecoder<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let object: JSONObject
    let path: [any CodingKey]
    var codingPath: [any CodingKey] { path }
    var allKeys: [Key] { object.keys.compactMap { Key(stringValue: $0) } }

    func contains(_ key: Key) -> Bool { object[key.stringValue] != nil }

    private func value(_ key: Key) throws -> JSONValue {
        guard let v = object[key.stringValue] else {
            throw JSONCodingError(path: pathText(path + [key]), message: "missing")
        }
        return v
    }

    func decodeNil(forKey key: Key) throws -> Bool { (object[key.stringValue] ?? .null) == .null }
    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try decodeScalar(type, try value(key), path: path + [key])
    }
    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        guard let v = object[key.stringValue], v != .null else { return nil }
        return try decodeScalar(type, v, path: path + [key])
    }
    func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type, forKey key: Key) throws -> KeyedDecodingContainer<NestedKey> {
        try DecodingBox(value: try value(key), path: path + [key]).container(keyedBy: type)
    }
    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        try DecodingBox(value: try value(key), path: path + [key]).unkeyedContainer()
    }
    func superDecoder() throws -> any Decoder { DecodingBox(value: .object(object), path: path) }
    func superDecoder(forKey key: Key) throws -> any Decoder { DecodingBox(value: try value(key), path: path + [key]) }
}

private struct UnkeyedDecoder: UnkeyedDecodingContainer {
    let items: [JSONValue]
    let path: [any CodingKey]
    var codingPath: [any CodingKey] { path }
    var count: Int? { items.count }
    var isAtEnd: Bool { currentIndex >= items.count }
    var currentIndex = 0

    init(items: [JSONValue], path: [any CodingKey]) {
        self.items = items
        self.path = path
    }

    private mutating func next() throws -> (JSONValue, [any CodingKey]) {
        guard !isAtEnd else { throw JSONCodingError(path: pathText(path), message: "array has only \(items.count) items") }
        defer { currentIndex += 1 }
        return (items[currentIndex], path + [IndexKey(currentIndex)])
    }

    mutating func decodeNil() throws -> Bool {
        guard !isAtEnd, items[currentIndex] == .null else { return false }
        currentIndex += 1
        return true
    }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T {
        let (v, p) = try next()
        return try decodeScalar(type, v, path: p)
    }
    mutating func nestedContainer<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) throws -> KeyedDecodingContainer<NestedKey> {
        let (v, p) = try next()
        return try DecodingBox(value: v, path: p).container(keyedBy: type)
    }
    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let (v, p) = try next()
        return try DecodingBox(value: v, path: p).unkeyedContainer()
    }
    mutating func superDecoder() throws -> any Decoder {
        let (v, p) = try next()
        return DecodingBox(value: v, path: p)
    }
}

private struct SingleDecoder: SingleValueDecodingContainer {
    let value: JSONValue
    let path: [any CodingKey]
    var codingPath: [any CodingKey] { path }
    func decodeNil() -> Bool { value == .null }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try decodeScalar(type, value, path: path) }
}
