"""/v1/files: upload (validated whole, nothing stored on failure), list, get, content, delete."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Form, Path, Query, Request, UploadFile
from fastapi.responses import Response

from app.api.deps import CurrentOrg, SessionDep, SettingsDep, StoreDep
from app.api.downloads import artifact_response
from app.api.responses import AUTHENTICATED, error_responses
from app.errors import bad_request
from app.models import File, epoch
from app.schemas import FileDeleted, FileListPublic, FilePublic
from app.services import files

router = APIRouter(prefix="/v1/files", tags=["files"], responses=AUTHENTICATED)


def to_public(row: File) -> FilePublic:
    return FilePublic(id=row.id, bytes=row.bytes, created_at=epoch(row.created_at),
                      filename=row.filename, purpose=row.purpose, records=row.records,
                      sha256=row.sha256, screening=row.screening)


async def single_parts(request: Request) -> None:
    """Exactly one `file` part and one `purpose` field: a second one used to win silently."""
    form = await request.form()  # parsed once by FastAPI already; this reads its cache
    for name in ("file", "purpose"):
        if len(form.getlist(name)) > 1:
            raise bad_request(f"The upload has {len(form.getlist(name))} `{name}` parts; send "
                              "exactly one file and one purpose per request", param=name,
                              code="duplicate_form_field")


def owned_file(session: SessionDep, org_id: CurrentOrg,
               file_id: Annotated[str, Path(description="A file id (file-…).")]) -> File:
    return files.get(session, org_id, file_id)


OwnedFile = Annotated[File, Depends(owned_file)]


@router.post("", response_model=FilePublic, summary="Upload a JSONL file",
             responses={**error_responses(400, description="Bad purpose, duplicate parts, or "
                                                          "invalid lines (each listed with its "
                                                          "line number); nothing was stored"),
                        **error_responses(413)})
def upload_file(session: SessionDep, org_id: CurrentOrg, store: StoreDep, settings: SettingsDep,
                _: Annotated[None, Depends(single_parts)], file: UploadFile,
                purpose: Annotated[str, Form(description="`fine-tune` (chat/Alpaca JSONL) or "
                                                         "`evals` (prompt set)")]) -> FilePublic:
    data = files.read_limited(file.file, settings.max_upload_bytes)
    return to_public(files.upload(session, store, org_id, file.filename or "", purpose, data))


@router.get("", response_model=FileListPublic)
def list_files(session: SessionDep, org_id: CurrentOrg,
               after: str | None = None, limit: Annotated[int, Query(ge=1, le=10000)] = 10000,
               purpose: str | None = None,
               order: Literal["asc", "desc"] = "desc") -> FileListPublic:
    rows, more = files.list_(session, org_id, after=after, limit=limit, purpose=purpose,
                             order=order)
    data = [to_public(r) for r in rows]
    return FileListPublic(data=data, has_more=more, first_id=data[0].id if data else None,
                          last_id=data[-1].id if data else None)


@router.get("/{file_id}", response_model=FilePublic, responses=error_responses(404))
def retrieve_file(row: OwnedFile) -> FilePublic:
    return to_public(row)


@router.get("/{file_id}/content", response_class=Response,
            responses={200: {"content": {"application/jsonl": {}}},
                       307: {"description": "A presigned URL of the object store (when the "
                                            "server sets BUCKLE_DOWNLOAD_PRESIGN_S)"},
                       **error_responses(404)})
def file_content(row: OwnedFile, store: StoreDep) -> Response:
    media = "text/csv" if row.filename.endswith(".csv") else "application/jsonl"
    return artifact_response(store, row.storage_key, filename=row.filename, media_type=media,
                             sha256=row.sha256, what="file content", ident=row.id)


@router.delete("/{file_id}", response_model=FileDeleted,
               responses=error_responses(404, 409))
def delete_file(row: OwnedFile, session: SessionDep, store: StoreDep) -> FileDeleted:
    file_id = row.id
    files.delete(session, store, row)
    return FileDeleted(id=file_id)
