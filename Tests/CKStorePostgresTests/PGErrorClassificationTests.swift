import Testing

@testable import CKStore
@testable import CKStorePostgres

/// PostgreSQL errors reach the user as the store's codes by SQLSTATE, never by message text.
@Suite("PGError → CKStoreError")
struct PGErrorClassificationTests {
    static let cases: [(String, CKStoreError.Code)] = [
        ("08006", .environment), ("08001", .environment), ("57P01", .environment), ("28P01", .environment),
        ("53100", .environment), ("55P03", .environment), ("57014", .environment), ("40001", .environment),
        ("40P01", .environment), ("42501", .environment), ("23505", .conflict), ("23503", .integrity), ("23514", .integrity),
        ("XX001", .integrity), ("42P01", .integrity), ("22P02", .environment),
    ]

    @Test(arguments: cases)
    func mapsBySQLState(_ c: (String, CKStoreError.Code)) {
        let error = PGError(origin: .server, sqlState: c.0, message: "the same message for every code")
        #expect(CKStoreError.wrapPostgres(error, context: "x").code == c.1, "\(c.0)")
        #expect(CKStoreError.wrap(error, context: "x").code == c.1, "\(c.0) through the core's wrap")
    }

    @Test func transientFailuresAreClassifiedTransient() {
        #expect(PGError(origin: .connection, sqlState: "08006", message: "lost").failureKind == .unavailable)
        #expect(PGError(origin: .server, sqlState: "40001", message: "retry").failureKind.isTransient)
        #expect(!PGError(origin: .server, sqlState: "23503", message: "fk").failureKind.isTransient)
    }
}
