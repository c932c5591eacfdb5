import CKStore

/// PostgreSQL errors as the store's error codes, by SQLSTATE class (never by message text):
///
/// | SQLSTATE | meaning | code |
/// |---|---|---|
/// | class 08, 57P01–57P03 | connection failed or lost, server shutting down | `.environment` |
/// | class 28 | authentication failed | `.environment` |
/// | class 53, 55P03, 57014 | out of resources, lock not available, statement cancelled | `.environment` |
/// | 40001, 40P01 | serialization failure, deadlock (after the retries) | `.environment` |
/// | 23505 | unique violation (after the retries: a concurrent writer kept winning) | `.conflict` |
/// | other class 23, class XX | a constraint the rows break, data corrupted | `.integrity` |
/// | 42P01 | a table is missing: not a ckstore schema | `.integrity` |
/// | 42501 | permission denied | `.environment` |
/// | anything else | | `.environment` |
extension CKStoreError {
    /// Wraps an error from the PostgreSQL layer (keeping `CKStoreError`s as they are).
    public static func wrapPostgres(_ error: any Error, context: String) -> CKStoreError {
        if let e = error as? CKStoreError { return e }
        if let e = error as? PGSchemaError { return CKStoreError(.environment, "\(context): \(e)", cause: e) }
        guard let e = error as? PGError else { return CKStoreError(.environment, "\(context): \(error)", cause: error) }
        let code: CKStoreError.Code
        if e.isConnectionFailure || e.isAuthenticationFailure || e.isInsufficientResources || e.isLockNotAvailable
            || e.isQueryCanceled || e.isRetryableTransactionFailure || e.isInsufficientPrivilege
        {
            code = .environment
        } else if e.isUniqueViolation {
            code = .conflict
        } else if e.isIntegrityConstraintViolation || e.sqlStateClass == "XX" || e.isUndefinedTable {
            code = .integrity
        } else {
            code = .environment
        }
        return CKStoreError(code, "\(context): \(e.message)" + (e.sqlState.map { " [SQLSTATE \($0)]" } ?? ""), cause: e)
    }
}

/// Runs `body`, turning any error into a `CKStoreError` with `context`.
func pgWrapping<T>(_ context: @autoclosure () -> String, _ body: () throws -> T) throws(CKStoreError) -> T {
    do {
        return try body()
    } catch {
        throw CKStoreError.wrapPostgres(error, context: context())
    }
}
