"""Model registry: named models with immutable versions, an active version each, and rollback.

Layout of the home folder (`$ARCOSEG_HOME`, else `~/.arcoseg`):

    registry.json                         the index (the source of truth; written atomically)
    registry.lock                         inter-process lock taken by every index write
    models/<name>/versions/<id>/          one model folder per version (ids v1, v2, ...)
    staging/<token>/                      versions being written; each holds a `.lock` while its
                                          process lives

A version folder is written in `staging/`, validated, then renamed into `models/` and added to
the index under the lock, so a version is either complete and listed or absent. Nothing ever
writes into a committed version folder: adapting a model makes a new version. Folders the index
does not list (left by a process killed between two steps) are ignored, and their ids are never
reused; staging folders whose process is gone are deleted by the next writer.

Modules: `names` (model names, version references, errors), `store` (the index, lock, staging
and folders), `entries` (the rules for the index's entries), `archive` (files in and out),
`versions` (`Registry`, the operations).
"""

from arcoseg.registry.names import (RegistryError, StagedVersion, VersionRef, check_name,
                                    registry_home)
from arcoseg.registry.versions import Registry

__all__ = ["Registry", "RegistryError", "StagedVersion", "VersionRef", "check_name",
           "registry_home"]
