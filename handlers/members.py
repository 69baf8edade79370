"""Members (API.md §4): list, create, read, update, delete, and the streamed CSV import."""
from __future__ import annotations

import tornado.web

from handlers.base import ApiHandler
from server.auth.sessions import Actor
from server.platform.errors import ValidationFailed
from server.platform.ids import parse_uuid
from server.platform.settings import Settings
from server.services import member_import, members

CSV_TYPES = ("text/csv", "application/csv")


def consent_source(actor: Actor) -> str:
    return "api" if actor.api_key_id else "staff"


class MembersHandler(ApiHandler):
    def _request_summary(self) -> str:
        # Tornado's access log would print the query string, and `?q=` may hold a phone.
        return f"{self.request.method} {self.request.path} ({self.request.remote_ip})"

    async def get(self) -> None:
        actor = self.require_role("staff")
        items, next_cursor, total = await members.list_members(
            await self.reader(), self.deps.settings, actor.church_id,
            self.page_limit(), cursor=self.page_cursor(),
            query=self.query_arg("q"), group_id=self.query_arg("group_id"),
            opted_in=self.query_arg("opted_in"))
        self.write_data(items, {"next_cursor": next_cursor, "total": total})

    async def post(self) -> None:
        actor = self.require_role("admin")
        body = self.json_body("MemberCreate")
        member = await members.create_member(self.deps.db, self.deps.settings,
                                             actor.church_id, body, consent_source(actor),
                                             redis=self.deps.redis)
        self.write_data(member, status=201)


class MemberHandler(ApiHandler):
    async def get(self, member_id: str) -> None:
        actor = self.require_role("staff")
        member = await members.get_member(self.deps.db, self.deps.settings, actor.church_id,
                                          parse_uuid(member_id))
        self.write_data(member)

    async def patch(self, member_id: str) -> None:
        actor = self.require_role("admin")
        body = self.json_body("MemberUpdate")
        member = await members.update_member(self.deps.db, self.deps.redis, self.deps.settings,
                                             actor.church_id, parse_uuid(member_id), body,
                                             consent_source(actor))
        self.write_data(member)

    async def delete(self, member_id: str) -> None:
        actor = self.require_role("admin")
        await members.delete_member(self.deps.db, self.deps.redis, actor.church_id,
                                    parse_uuid(member_id))
        self.write_no_content()


@tornado.web.stream_request_body
class MemberImportHandler(ApiHandler):
    """POST /members/import: the body is parsed and written while it arrives."""

    importer: member_import.MemberImport | None = None
    failure: BaseException | None = None

    async def prepare(self) -> None:
        self.request.connection.set_max_body_size(  # type: ignore[union-attr]
            self.deps.settings.max_import_bytes)
        await super().prepare()
        actor = self.require_role("admin")
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() not in CSV_TYPES:
            raise ValidationFailed.field("Content-Type", "Send the file as text/csv.")
        self.importer = member_import.MemberImport(self.deps.db, self.deps.redis,
                                                   self.deps.settings, actor.church_id)

    @staticmethod
    def body_limit(settings: Settings) -> int:
        """The one route whose body may be large (server.app reads it before the body)."""
        return settings.max_import_bytes

    async def data_received(self, chunk: bytes) -> None:
        if self.importer is None or self.failure is not None:
            return
        try:
            await self.importer.feed(chunk)
        except Exception as exc:  # surfaced by post(), once the body has been read
            self.failure = exc

    async def post(self) -> None:
        if self.failure is not None:
            raise self.failure
        assert self.importer is not None
        result = await self.importer.finish()
        self.write_data(result.public())
