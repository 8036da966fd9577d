# ruff: noqa: RUF001  -- the demo text holds look-alike characters on purpose
"""Names and phrases the demo data is made of.

``HOSTILE`` holds realistic text that breaks naive exporters: quotes, delimiters,
newlines, emoji, spreadsheet formulas, markup and right-to-left scripts.
"""

from __future__ import annotations

# Orgs and their chat rooms, each room with its relative traffic: a few busy
# rooms and a long tail, as in real deployments.
ORGS: tuple[tuple[str, tuple[tuple[str, int], ...]], ...] = (
    (
        "Acme Outdoor",
        (("Web shop", 30), ("Returns", 6), ("B2B sales", 4), ("Warranty", 2), ("Store pickup", 1)),
    ),
    (
        "Nordic Bank",
        (("Private customers", 12), ("Mortgages", 5), ("Cards", 4), ("Business banking", 3)),
    ),
    ("City Clinic", (("Appointments", 10), ("Billing", 3), ("Lab results", 2))),
    ("Kauppa Oy", (("Asiakaspalvelu", 8), ("Verkkokauppa", 2))),
)

OPERATORS: tuple[str, ...] = (
    "Olivia Operator",
    "Matti Meikäläinen",
    "Sofía Núñez",
    "Liam O'Connor",
    "Chen Wei",
    "Aisha Rahman",
    "Jonas Berg",
    "Emma Virtanen",
    'Noah "Nick" Smith',
    "Fatima Zahra",
    "Lukas Müller",
    "Hanna Korhonen",
)

VISITOR_NAMES: tuple[str, ...] = (
    "Alice Andersson",
    "Bob Brown",
    "Zoë Saldaña-Perez",
    "José Álvarez",
    "محمد العلي",
    "דנה לוי",
    "李雷",
    "Åsa Öberg",
    "O'Brien, Kate",
    "Pekka Virtanen",
    "Jean-Luc <JL>",
    "Ngozi Okafor",
)

VISITOR_LINES: tuple[str, ...] = (
    "Hi, my order hasn't arrived yet.",
    "Hello! Can I change the delivery address?",
    "Do you have this in size 42?",
    "The payment failed twice, what should I do?",
    "How long does a refund take?",
    "I can't log in to my account.",
    "Is the store open on Sunday?",
    "Thanks, that helps a lot!",
    "Could you check order 100234 please",
    "ok",
    "Yes, that's the one.",
    "No, it was the blue one.",
    "Great, thank you 🙂",
    "What are your opening hours?",
    "I'd like to book an appointment for next week.",
    "My card was charged twice.",
    "Can I get an invoice for my company?",
    "Where can I find the tracking number?",
)

# An operator opens with a greeting and closes with a farewell; the lines
# between come from OPERATOR_LINES.
OPERATOR_GREETINGS: tuple[str, ...] = (
    "Hello! How can I help you today?",
    "Hi, thanks for waiting! What can I do for you?",
)
OPERATOR_FAREWELLS: tuple[str, ...] = (
    "You're welcome, have a nice day!",
    "Glad I could help. Have a great day!",
)

OPERATOR_LINES: tuple[str, ...] = (
    "Let me check that for you, one moment please.",
    "I can see your order, it left our warehouse yesterday.",
    "Could you give me your order number?",
    "Refunds take 3–5 business days.",
    "I've sent you a password reset link.",
    "Yes, we're open 10–16 on Sundays.",
    "Is there anything else I can help with?",
    "I changed the address for you.",
    "I'll forward this to our billing team.",
    "Sorry for the trouble!",
)

BOT_LINES: tuple[str, ...] = (
    "Hi! 👋 How can we help you today?",
    "All our agents are busy right now. We'll be with you shortly.",
    "You can also find answers in our help center: https://help.example.com/?q=order&lang=en",
    "Did you know? Orders over 50 € ship for free.",
)

SYSTEM_LINES: tuple[str, ...] = (
    "Visitor left the chat.",
    "Chat was transferred to another operator.",
    "Chat ended due to inactivity.",
)

HOSTILE: tuple[str, ...] = (
    'She said "it\'s broken", then hung up',
    'Items: tent, stove; 2 × mats, 1 × "lamp"',
    "First line\nsecond line\r\nthird line",
    "Column\tseparated\tvalues",
    "🎉🔥 Awesome, thanks!! 👍🏽👨‍👩‍👧",
    "=SUM(A1:A3)",
    '=HYPERLINK("http://evil.example","click")',
    "+358 40 123 4567",
    "-5% discount?",
    "@support please help",
    "<b>bold</b> and <script>alert('x')</script>",
    "Price < 100 & size > 40",
    "مرحبا، أحتاج مساعدة بخصوص طلبي",
    "שלום, ההזמנה שלי לא הגיעה",
    "Mixed: order #42 (طلب) is late",
    "Ünïcödé ñ ß ø — “smart quotes” and ‘apostrophes’",
    "   leading and trailing spaces   ",
    "back\\slash and C:\\path\\file.txt",
)

PRODUCT_PAGES = ("https://shop.example.com/tents", "https://shop.example.com/stoves")
SALE_PAGE = "https://shop.example.com/sale"
# The pages of each step of a web navigation workflow.
WEB_PAGES: tuple[tuple[str, ...], ...] = (
    ("https://shop.example.com/", "https://shop.example.com/?utm_source=newsletter"),
    PRODUCT_PAGES,
    ("https://shop.example.com/cart",),
    ("https://shop.example.com/checkout/thank-you",),
)

EVENT_ACTIONS: dict[str, tuple[tuple[str, ...], ...]] = {
    "web_navigation": (("page_view",),) * len(WEB_PAGES),
    "interaction": (("shown",), ("clicked", "closed"), ("submitted",)),
    "voice_video": (("Call button shown",), ("User dialed", "Visitor dialed"), ("Call answered",)),
    "chat": (("Chat button shown",), ("Chat started",), ("Operator replied", "Chat ended")),
    "user_generated": (
        ("Newsletter form seen",),
        ("Signed up",),
        ("Confirmed email",),
        ("First purchase",),
    ),
}

WORKFLOW_NAMES: dict[str, str] = {
    "web_navigation": "Campaign landing to checkout",
    "interaction": "Autumn sale popup",
    "voice_video": "Video call with an expert",
    "chat": "Proactive chat on product pages",
    "user_generated": "Newsletter sign-up funnel",
}

QNA_CHANNELS: tuple[tuple[str, int], ...] = (
    ("All-hands town hall", 60),
    ("Product launch livestream", 8),
    ("Quarterly investor call", 3),
)

QUESTIONS: tuple[str, ...] = (
    "When will the new version be available?",
    "Will the recording be shared afterwards?",
    "How does this affect existing customers?",
    "What's the pricing for teams?",
    "Can you repeat the last slide?",
    "Is there a roadmap for mobile?",
    "How many people work on this?",
    "What about data privacy in the EU?",
)

ANSWERS: tuple[str, ...] = (
    "Yes, within a week.",
    "Early next quarter.",
    "Nothing changes for existing customers.",
    "We'll share details by email.",
    "Good question — see the FAQ.",
)

QUESTION_STATUSES: tuple[tuple[str, int], ...] = (
    ("answered", 45),
    ("approved", 20),
    ("pending", 20),
    ("rejected", 15),
)
