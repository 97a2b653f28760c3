-- Operators' overrides entered through the API, CLI or console (pins and excludes), one
-- document per overridden source object, named PROFILE/SOURCE_ID; the body is a
-- [[sync_profile.override]] entry as JSON, with the object ids the operator's keys resolved to.
CREATE TABLE sync_overrides (
    name TEXT PRIMARY KEY,
    body TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
