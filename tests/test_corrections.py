"""Correction and new-word lines are checked as they stream; everything else flows through.

The model's output is scripted and streamed in small chunks, as Ollama sends it: exactly the genuine
corrections and words reach the learner and the findings (which become cards)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Sequence

import pytest

from core.categories import label
from core.corrections import (
    MAX_CORRECTIONS,
    Correction,
    Findings,
    NewWord,
    Said,
    checked,
    correction_line,
    is_local_edit,
    parse_correction,
)
from core.i18n import render

ANA = "test:user:1"
BEN = "test:user:2"


async def chunked(text: str, size: int = 3) -> AsyncGenerator[str, None]:
    for i in range(0, len(text), size):
        yield text[i : i + size]


async def run(
    text: str, learner: str | Sequence[Said], *, before: str = "", native: str = "en", size: int = 3
) -> tuple[str, Findings]:
    said = [Said(ANA, learner)] if isinstance(learner, str) else list(learner)
    findings = Findings([], [])
    stream = checked(chunked(text, size), said, language="es", native=native, tutor_before=before, findings=findings)
    return "".join([chunk async for chunk in stream]), findings


def line(wrong: str, fix: str, category: str = "verb form", explanation: str = "irregular") -> str:
    """A correction line as the prompt asks for it."""
    return f'✏️ "{wrong}" → "{fix}" ({category}) — {explanation}'


def shown(wrong: str, fix: str, category: str = "verb form", explanation: str = "irregular", native: str = "en") -> str:
    """A correction line as the learner sees it."""
    return f'✏️ "{wrong}" → "{fix}" ({render(label(category), native)}) — {explanation}'


# Genuine corrections


async def test_a_genuine_correction_is_kept_and_found() -> None:
    reply = "¡Muy bien! ¿Y tú?\n" + line("yo tiene", "yo tengo", explanation='"tener" is irregular: yo tengo.')
    out, findings = await run(reply, "yo tiene un perro")
    assert out == reply
    assert findings.corrections == [
        Correction("yo tiene", "yo tengo", "verb form", '"tener" is irregular: yo tengo.', ANA, "yo tiene un perro")
    ]


async def test_the_quote_keeps_the_learners_own_case_and_the_whole_message_as_context() -> None:
    out, findings = await run("Vale.\n" + line("yo tiene", "yo tengo"), "Yo  tiene un perro, ¿y tú?")
    assert findings.corrections[0].wrong == "Yo  tiene"
    assert findings.corrections[0].context == "Yo  tiene un perro, ¿y tú?"
    assert '"Yo  tiene"' in out


async def test_case_spacing_and_edge_punctuation_of_the_quote_do_not_matter() -> None:
    _, findings = await run("Vale.\n" + line("¡YO TIENE,", "yo tengo"), "Yo tiene un perro")
    assert [c.wrong for c in findings.corrections] == ["Yo tiene"]


async def test_a_single_word_vocabulary_swap_is_a_correction() -> None:
    reply = "¡Qué bonito!\n" + line("carpeta", "alfombra", "vocabulary", '"carpeta" is a folder.')
    out, findings = await run(reply, "Tengo una carpeta roja en el salón")
    assert out == reply
    assert [(c.wrong, c.fix, c.category) for c in findings.corrections] == [("carpeta", "alfombra", "vocabulary")]


async def test_a_fix_of_several_errors_in_a_longer_quote_is_a_correction() -> None:
    reply = "Ok.\n" + line("ayer yo voy a la playa con mi amigos", "ayer fui a la playa con mis amigos", "verb tense")
    _, findings = await run(reply, "Ayer yo voy a la playa con mi amigos.")
    assert len(findings.corrections) == 1


# Invented, no-op and rewritten corrections


async def test_a_correction_of_words_the_learner_never_wrote_is_dropped() -> None:
    out, findings = await run(
        "¡Muy bien!\n" + line("el gato", "la gata", "agreement") + "\n¿Y tú?", "yo tengo un perro"
    )
    assert out == "¡Muy bien!\n¿Y tú?"
    assert findings.corrections == []


async def test_a_quote_must_be_whole_words_of_the_message() -> None:
    _, findings = await run("Bien.\n" + line("tiene", "tienes"), "¿Tú tienes un perro?")
    assert findings.corrections == []


async def test_a_correction_that_changes_nothing_is_dropped() -> None:
    out, findings = await run("Bien.\n" + line("un perro", "un perro"), "tengo un perro")
    assert out == "Bien."
    assert findings.corrections == []


async def test_a_change_of_case_or_punctuation_alone_changes_nothing() -> None:
    reply = "Bien.\n" + line("tengo un perro", "Tengo un perro.") + "\n" + line("hola como", "hola, como")
    out, findings = await run(reply, "tengo un perro. hola como estás")
    assert (out, findings.corrections) == ("Bien.", [])


async def test_a_rewritten_sentence_is_not_a_correction() -> None:
    reply = "¡Qué rico!\n" + line("me gusta la comida", "la comida me encanta mucho", "vocabulary")
    out, findings = await run(reply, "Me gusta la comida de aquí")
    assert out == "¡Qué rico!"
    assert findings.corrections == []


async def test_a_fix_that_adds_a_whole_clause_is_not_a_correction() -> None:
    _, findings = await run("Bien.\n" + line("voy", "fui a la playa ayer"), "Ayer voy a la playa")
    assert findings.corrections == []


def test_a_local_edit_is_a_few_words_changed() -> None:
    assert is_local_edit("yo tiene", "yo tengo")
    assert is_local_edit("voy playa", "voy a la playa")
    assert not is_local_edit("voy playa", "mañana voy a la playa con ella")
    assert not is_local_edit("a", "extraordinariamente")


# Categories


async def test_the_category_the_model_wrote_is_normalized() -> None:
    _, findings = await run("Bien.\n" + line("yo tiene", "yo tengo", "Verb_Tenses"), "yo tiene un perro")
    assert findings.corrections[0].category == "verb tense"


async def test_an_unknown_category_becomes_other() -> None:
    out, findings = await run("Bien.\n" + line("yo tiene", "yo tengo", "grammar stuff"), "yo tiene un perro")
    assert findings.corrections[0].category == "other"
    assert out == "Bien.\n" + shown("yo tiene", "yo tengo", "other")


async def test_a_correction_without_a_category_is_other() -> None:
    _, findings = await run('Bien.\n✏️ "yo tiene" → "yo tengo" — irregular', "yo tiene un perro")
    assert [(c.category, c.explanation) for c in findings.corrections] == [("other", "irregular")]


async def test_a_spanish_lesson_knows_ser_estar() -> None:
    _, findings = await run("Vale.\n" + line("es cansada", "está cansada", "ser vs estar"), "Mi madre es cansada")
    assert findings.corrections[0].category == "ser/estar"


# Duplicates, the limit, and the tutor's own words


async def test_a_repeated_correction_is_kept_once() -> None:
    reply = "Bien.\n" + line("yo tiene", "yo tengo") + "\n" + line("Yo tiene", "yo tengo", explanation="again")
    out, findings = await run(reply, "yo tiene un perro")
    assert out.count("✏️") == 1 and len(findings.corrections) == 1


async def test_of_five_corrections_at_once_the_first_three_are_kept() -> None:
    pairs = [("yo tiene", "yo tengo"), ("la problema", "el problema"), ("muy grande", "muy grandes")]
    pairs += [("mi amigos", "mis amigos"), ("en la casa", "a la casa")]
    reply = "¡Cuántas cosas!\n" + "\n".join(line(wrong, fix) for wrong, fix in pairs)
    learner = "yo tiene la problema muy grande con mi amigos en la casa"
    out, findings = await run(reply, learner)
    assert MAX_CORRECTIONS == 3
    assert [(c.wrong, c.fix) for c in findings.corrections] == pairs[:3]
    assert out == "¡Cuántas cosas!\n" + "\n".join(shown(wrong, fix) for wrong, fix in pairs[:3])


async def test_invented_corrections_do_not_use_up_the_limit() -> None:
    lines = [line("el gato", "la gata"), line("un coche", "una coche"), line("yo tiene", "yo tengo")]
    lines += [line("mi amigos", "mis amigos"), line("la problema", "el problema")]
    _, findings = await run("Bien.\n" + "\n".join(lines), "yo tiene la problema con mi amigos")
    assert [c.wrong for c in findings.corrections] == ["yo tiene", "mi amigos", "la problema"]


async def test_a_correction_of_the_tutors_previous_reply_is_dropped() -> None:
    before = "¿Qué haces los fines de semana?"
    _, findings = await run(
        "Bien.\n" + line("los fines de semana", "el fin de semana"), "los fines de semana leo", before=before
    )
    assert findings.corrections == []


async def test_an_error_corrected_in_the_previous_reply_can_be_corrected_again() -> None:
    before = "¡Qué bien!\n" + shown("yo tiene", "yo tengo") + "\n¿Y tu hermano?"
    _, findings = await run("Otra vez.\n" + line("yo tiene", "yo tengo"), "yo tiene un hermano", before=before)
    assert [c.wrong for c in findings.corrections] == ["yo tiene"]


# Shapes and the canonical format


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("- ✏️ **“yo tiene”** -> **“yo tengo”** [verb form]: irregular", shown("yo tiene", "yo tengo")),
        (
            "2. ✏ la problema => el problema — masculine (agreement)",
            shown("la problema", "el problema", "agreement", "masculine"),
        ),
        ("✏️ 'mi amigos' → 'mis amigos' — Agreement: plural", shown("mi amigos", "mis amigos", "agreement", "plural")),
        ('✏️"voy playa"→"voy a la playa"', '✏️ "voy playa" → "voy a la playa" (other)'),
        ("✏️ „yo tiene“ ⇒ „yo tengo“ — (verb form) irregular", shown("yo tiene", "yo tengo")),
        ('✏️ Corrección: "yo tiene" → "yo tengo" (verb form) — irregular', shown("yo tiene", "yo tengo")),
    ],
)
async def test_every_shape_of_correction_is_shown_in_one_format(written: str, canonical: str) -> None:
    out, _ = await run("Bien.\n" + written, "yo tiene la problema con mi amigos y voy playa")
    assert out == "Bien.\n" + canonical


async def test_the_category_is_shown_in_the_explanations_language() -> None:
    out, _ = await run("Gut.\n" + line("yo tiene", "yo tengo", "verb tense", "unregelmäßig"), "yo tiene", native="de")
    assert out == "Gut.\n" + shown("yo tiene", "yo tengo", "verb tense", "unregelmäßig", native="de")


def test_the_canonical_line_reads_back_as_the_same_correction() -> None:
    correction = Correction('dijo "hola"', "dijo hola", "spelling", "no quotes — ever", ANA, 'Él dijo "hola"')
    parsed = parse_correction(correction_line(correction, "en"), "es")
    assert parsed is not None
    assert (parsed.wrong, parsed.fix, parsed.category, parsed.explanation) == (
        'dijo "hola"',
        "dijo hola",
        "spelling",
        "no quotes — ever",
    )


async def test_a_correction_line_in_another_shape_is_dropped() -> None:
    out, findings = await run("Muy bien.\n✏️ Remember: adjectives agree with nouns.\n¿Y tú?", "la casa blanco")
    assert out == "Muy bien.\n¿Y tú?"
    assert findings.corrections == []


async def test_a_correction_cut_off_before_its_fix_closed_is_dropped() -> None:
    out, findings = await run('Bien.\n✏️ "yo tiene" → "yo ten …', "yo tiene un perro")
    assert (out, findings.corrections) == ("Bien.", [])


async def test_a_correction_in_the_middle_of_a_line_is_checked_and_put_on_its_own_line() -> None:
    reply = '¡Bien! ✏️ "yo tiene" → "yo tengo" (verb form) — irregular ✏️ "el gato" → "la gata" — invented'
    out, findings = await run(reply, "yo tiene un perro")
    assert out == "¡Bien! \n" + shown("yo tiene", "yo tengo")
    assert len(findings.corrections) == 1


async def test_a_correction_cut_off_in_the_middle_of_a_line_is_dropped() -> None:
    out, findings = await run('¡Bien! ✏️ "yo tiene" → "yo ten …', "yo tiene un perro")
    assert (out, findings.corrections) == ("¡Bien! ", [])


async def test_a_pencil_inside_a_sentence_is_only_decoration() -> None:
    reply = "Me gusta escribir ✏️ cada día. ¿Y a ti?"
    assert (await run(reply, "hola"))[0] == reply


# New words


async def test_a_new_word_used_in_the_reply_is_kept_with_its_sentence() -> None:
    reply = "¡Qué bien! Tu mascota parece feliz. ¿Cómo se llama?\n📘 mascota — pet"
    out, findings = await run(reply, "Tengo un perro")
    assert out == reply
    assert findings.words == [NewWord("mascota", "pet", "Tu mascota parece feliz.")]


async def test_a_new_word_missing_from_the_reply_is_dropped() -> None:
    out, findings = await run("¡Qué bien! ¿Cómo se llama?\n📘 mascota — pet", "Tengo un perro")
    assert (out, findings.words) == ("¡Qué bien! ¿Cómo se llama?", [])


async def test_a_new_word_must_be_a_whole_word_of_the_reply() -> None:
    _, findings = await run("Tus mascotas son lindas.\n📘 mascota — pet", "Tengo un perro")
    assert findings.words == []


async def test_a_word_the_learner_used_is_not_new_to_them() -> None:
    _, findings = await run("¡Un perro! Qué lindo.\n📘 perro — dog", "Tengo un perro")
    assert findings.words == []


async def test_at_most_two_new_words_are_kept() -> None:
    reply = (
        "Vamos a la playa con la sombrilla y la toalla.\n📘 playa — beach\n📘 sombrilla — parasol\n📘 toalla — towel"
    )
    out, findings = await run(reply, "Hola")
    assert [w.word for w in findings.words] == ["playa", "sombrilla"]
    assert out == "Vamos a la playa con la sombrilla y la toalla.\n📘 playa — beach\n📘 sombrilla — parasol"


async def test_a_new_phrase_is_found_across_line_breaks_and_case() -> None:
    reply = "Hoy hace\nfrío. ¡Hace Frío de verdad!\n📘 **hace frío**: it is cold"
    out, findings = await run(reply, "Hola")
    assert findings.words == [NewWord("hace frío", "it is cold", "¡Hace Frío de verdad!")]
    assert out.endswith("\n📘 hace frío — it is cold")


async def test_a_new_word_line_without_a_translation_is_dropped() -> None:
    out, findings = await run("La playa es bonita.\n📘 playa", "Hola")
    assert (out, findings.words) == ("La playa es bonita.", [])


async def test_a_new_word_is_kept_once() -> None:
    _, findings = await run("La playa es bonita.\n📘 playa — beach\n📘 Playa — shore", "Hola")
    assert findings.words == [NewWord("playa", "beach", "La playa es bonita.")]


# Groups


async def test_in_a_group_each_correction_belongs_to_the_student_it_quotes() -> None:
    said = [Said(ANA, "Yo tiene un gato"), Said(BEN, "Mi hermana es cansada")]
    reply = (
        "¡Ana y Ben, muy bien!\n"
        + line("es cansada", "está cansada", "ser/estar")
        + "\n"
        + line("yo tiene", "yo tengo")
    )
    _, findings = await run(reply, said)
    assert [(c.wrong, c.author, c.context) for c in findings.corrections] == [
        ("es cansada", BEN, "Mi hermana es cansada"),
        ("Yo tiene", ANA, "Yo tiene un gato"),
    ]


async def test_a_correction_after_a_students_paragraph_belongs_to_that_student() -> None:
    said = [Said(ANA, "Yo tiene un gato", "Ana"), Said(BEN, "Yo tiene un perro", "Ben")]
    reply = (
        "Ana, ¡qué bonito!\n"
        + line("yo tiene", "yo tengo")
        + "\n\nBen, ¿cómo se llama?\n"
        + line("yo tiene", "yo tengo")
    )
    _, findings = await run(reply, said)
    assert [(c.author, c.context) for c in findings.corrections] == [
        (ANA, "Yo tiene un gato"),
        (BEN, "Yo tiene un perro"),
    ]


async def test_in_a_reply_to_several_students_each_may_have_three_corrections() -> None:
    said = [Said(ANA, "yo tiene uno dos tres cuatro", "Ana"), Said(BEN, "el casa la perro", "Ben")]
    reply = "\n".join(
        [
            "Ana, bien.",
            line("yo tiene", "yo tengo"),
            line("uno", "un"),
            line("dos", "doce"),
            line("tres", "trece"),
            "Ben, bien.",
            line("el casa", "la casa", "agreement"),
            line("la perro", "el perro", "agreement"),
        ]
    )
    _, findings = await run(reply, said)
    assert [(c.author, c.wrong) for c in findings.corrections] == [
        (ANA, "yo tiene"),
        (ANA, "uno"),
        (ANA, "dos"),
        (BEN, "el casa"),
        (BEN, "la perro"),
    ]


async def test_in_a_group_words_no_student_wrote_are_dropped() -> None:
    said = [Said(ANA, "Yo tiene un gato"), Said(BEN, "Mi hermana es cansada")]
    _, findings = await run("Bien.\n" + line("yo tiene cansada", "yo tengo cansada"), said)
    assert findings.corrections == []


# Streaming


async def test_a_reply_without_marked_lines_streams_untouched() -> None:
    reply = "¡Hola!\n\n- Uno: 1.\n- Dos -> 2\n\n¿Y tú?\n"
    chunks = [chunk async for chunk in checked(chunked(reply, 4), [Said(ANA, "hola")], language="es", native="en")]
    assert "".join(chunks) == reply
    assert len(chunks) == len(reply) // 4 + 1


async def test_text_before_a_correction_streams_before_the_model_has_finished() -> None:
    last_wanted = asyncio.Event()

    async def model() -> AsyncGenerator[str, None]:
        yield "¡Hola! "
        yield "¿Qué tal?\n✏️ "
        await last_wanted.wait()
        yield '"yo tiene" → "yo tengo" (verb form) — irregular'

    stream = checked(model(), [Said(ANA, "yo tiene")], language="es", native="en")
    assert await anext(stream) == "¡Hola! "
    assert await anext(stream) == "¿Qué tal?"
    last_wanted.set()
    assert [chunk async for chunk in stream] == ["\n" + shown("yo tiene", "yo tengo")]


async def test_dropped_lines_leave_no_blank_lines_behind() -> None:
    reply = '¡Hola!\n\n✏️ invented\n\n📘 nada — nothing\n\n¿Y tú?\n\n✏️ "el gato" → "la gata"\n'
    out, _ = await run(reply, "hola")
    assert out == "¡Hola!\n\n¿Y tú?"


async def test_a_kept_line_after_a_blank_line_keeps_it() -> None:
    reply = "¡Hola!\n\n" + line("yo tiene", "yo tengo")
    assert (await run(reply, "yo tiene"))[0] == reply


async def test_findings_come_in_the_order_of_the_lines() -> None:
    reply = "Tu mascota es feliz.\n📘 mascota — pet\n" + line("yo tiene", "yo tengo")
    _, findings = await run(reply, "yo tiene un perro", size=1)
    assert [c.wrong for c in findings.corrections] == ["yo tiene"]
    assert [w.word for w in findings.words] == ["mascota"]


async def test_without_findings_the_filter_still_filters() -> None:
    stream = checked(chunked("Bien.\n" + line("el gato", "la gata")), [Said(ANA, "hola")], language="es", native="en")
    assert "".join([chunk async for chunk in stream]) == "Bien."
