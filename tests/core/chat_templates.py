"""Chat templates for the tiny test tokenizer."""

#: A minimal chat template whose turns end with the tokenizer's EOS.
TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|endoftext|>{% endfor %}"
            "{% if add_generation_prompt %}<|assistant|>{% endif %}")
#: The same without EOS at the end of turns (packing must add EOS between conversations).
TEMPLATE_NO_EOS = ("{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
                   "{% if add_generation_prompt %}[assistant] {% endif %}")
