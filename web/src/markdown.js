// Model output is untrusted: Markdown is rendered by markdown-it with raw HTML off (so HTML in
// a reply stays text), then the result goes through DOMPurify, which removes whatever could
// still run: script, event handlers, javascript: and other non-http(s)/mailto links.
import MarkdownIt from 'markdown-it';
import DOMPurify from 'dompurify';

const md = new MarkdownIt({ html: false, linkify: true, breaks: true });

const SAFE_URL = /^(?:https?:|mailto:|#|\/(?!\/))/i;

const purifier = DOMPurify(window);
purifier.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    const href = node.getAttribute('href');
    if (href && !SAFE_URL.test(href.trim())) node.removeAttribute('href');
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
  if (node.tagName === 'IMG') {
    // No third-party origins on this page (the CSP would block them anyway): show the alt text.
    const alt = node.getAttribute('alt') || 'image';
    node.replaceWith(node.ownerDocument.createTextNode(`[${alt}]`));
  }
});

const CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ['style', 'form', 'input', 'button', 'textarea', 'select', 'iframe', 'object', 'embed'],
  FORBID_ATTR: ['style', 'srcset'],
  ALLOW_DATA_ATTR: false,
};

/** Sanitized HTML of a Markdown text from a model. */
export function renderMarkdown(text) {
  return purifier.sanitize(md.render(text ?? ''), CONFIG);
}
