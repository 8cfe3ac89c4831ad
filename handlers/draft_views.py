"""What a person sees about a kept submission whose outcome is unknown: the private answer
with its choices (also sent by the crash recovery) and the link modal. Pure functions."""

from __future__ import annotations

from bot.errors import SubmissionUnknown
from bot.messages import blocks as kit
from bot.messages.format import button, escape, section, truncate
from handlers.ids import DraftAction, DraftBlock, DraftCallback, DraftInput
from store.states import DraftKind

#: What a kind of submission makes, in a sentence ("the incident").
THING = {DraftKind.DECLARE: "incident", DraftKind.SCHEDULE: "maintenance window"}
UPSTREAM_ID_MAX = 64  # what the store keeps (a GUID is 36)


def _thing(kind: str) -> str:
    return THING.get(DraftKind(kind), "change")


def _upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def unknown_answer(err: SubmissionUnknown, *, recovered: bool = False) -> tuple[str, list[dict]]:
    """ "Outcome unknown", what was typed, and the choices this upstream allows."""
    thing = _thing(err.kind)
    service = err.service
    if recovered:
        head = (
            f":grey_question: *Outcome unknown.* sitrep stopped while it was sending your {thing} to {service}, "
            f"so {service} may or may not have it."
        )
    else:
        head = (
            f":grey_question: *Outcome unknown.* {_upper(service)} got your {thing} but no answer came back "
            f"({escape(err.reason.rstrip('.'))}), so it may or may not have made it."
        )
    head += " Nothing you typed is lost. Choose:"
    choices: list[str] = []
    buttons: list[dict] = []
    value = str(err.draft_id)
    if err.can_check:
        choices.append(f"• *Check and retry* looks in {service} first and only creates it if it is not there.")
        buttons.append(button("Check and retry", DraftAction.CHECK, value, "primary"))
    if err.can_link:
        choices.append(f"• *It exists: link it* — if you can see it on {service}, paste its ID and sitrep takes it from there.")
        buttons.append(button("It exists: link it", DraftAction.LINK, value, None if err.can_check else "primary"))
    anyway = "Create anyway" if DraftKind(err.kind).creates else "Send anyway"
    choices.append(
        f"• *{anyway}* sends it again without looking" + (" (it may then exist twice)." if DraftKind(err.kind).creates else ".")
    )
    buttons.append(button(anyway, DraftAction.ANYWAY, value))
    choices.append("• *Edit* reopens the form with what you typed.")
    buttons.append(button("Edit", DraftAction.EDIT, value))
    quoted = "\n".join("> " + escape(line) for line in truncate(err.summary, 2500).splitlines()) or "> (empty)"
    blocks = [section(head + "\n" + "\n".join(choices)), section(quoted), {"type": "actions", "elements": buttons}]
    text = f"Outcome unknown: {service} may or may not have made your {thing}."
    return text, blocks


def link_modal(draft_id: int, *, kind: str, service: str, summary: str, channel_id: str | None) -> dict:
    """Where the person pastes the ID of what the lost send made."""
    thing = _thing(kind)
    blocks = [
        section(
            f"Paste the ID of the {thing} as {service} shows it. sitrep then stores it, announces it and "
            "threads everything after it, as if the answer had arrived."
        ),
        section("\n".join("> " + escape(line) for line in truncate(summary, 1500).splitlines()) or "> (empty)"),
        kit.input_block(
            DraftBlock.UPSTREAM_ID,
            f"ID on {service}",
            kit.text_input(
                DraftInput.UPSTREAM_ID, max_length=UPSTREAM_ID_MAX, placeholder="3fa85f64-5717-4562-b3fc-2c963f66afa6"
            ),
        ),
    ]
    return kit.modal(DraftCallback.LINK, "It exists: link it", "Link", blocks, {"draft": draft_id, "channel": channel_id})
