"""A progress listener for tests: keeps every event, answers which notices came."""

from __future__ import annotations

from segdl.core.progress import Event, Notice, NoticeKind


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def notices(self, kind: NoticeKind) -> list[Notice]:
        return [e for e in self.events if isinstance(e, Notice) and e.kind is kind]

    def kinds(self) -> set[NoticeKind]:
        return {e.kind for e in self.events if isinstance(e, Notice)}
